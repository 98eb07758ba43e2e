#!/usr/bin/env bash
# Before device time is spent: the test suite here, on the CPU, under the PyTorch of the GPU machines' image
# (/work/.library/device/KINDS.md lists torch 2.11.0 and torchvision 0.26.0 there; this checkout's venv has a
# newer one), so that an API the image's PyTorch lacks fails here and not in a device call.
#   bash benchmarks/gpu/device_torch_check.sh [PYTEST ARGS...]
# VENV (default /tmp/ssdd-device-torch), TORCH, TORCHVISION pick the environment; it is made once and reused.
# test_installed_package is left out: it builds a wheel with the checkout's own venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-/tmp/ssdd-device-torch}
TORCH=${TORCH:-2.11.0}
TORCHVISION=${TORCHVISION:-0.26.0}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "torch==$TORCH" "torchvision==$TORCHVISION"
"$VENV/bin/python" -m pip install -q -e ".[test]"
"$VENV/bin/python" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONPATH="$PWD/src" "$VENV/bin/python" -m pytest -q -p no:logging \
  --deselect tests/test_installed_package.py "$@"
