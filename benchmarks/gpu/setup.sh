# Sourced by the GPU scripts: install the carried pure-Python wheels (omegaconf and its parser) that the
# GPU image lacks, and run ssdd from the checkout.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
