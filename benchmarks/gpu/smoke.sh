#!/usr/bin/env bash
# First GPU call: park the first part of the CIFAR-100 pack outside the checkout, check every CUDA code
# path on the digits demo (teacher with bf16 + channels-last, KRR-ST, Boost, random), and measure the
# reference teacher's images/s on CIFAR-shaped random data.
#   bash benchmarks/gpu/smoke.sh OUT
set -euo pipefail
OUT=$1
source benchmarks/gpu/setup.sh
mkdir -p /tmp/pack && cp .gpu/a/* /tmp/pack/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 - <<'PY'
import numpy as np
from ssdd.data import save_npz
rng = np.random.default_rng(0)
split = lambda n: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 100)
save_npz("/tmp/synthetic.npz", {"train": split(12800), "test": split(1000)}, [str(i) for i in range(100)])
PY
python3 benchmarks/teacher_throughput.py --data /tmp/synthetic.npz --images 12800 --models resnet18:64 \
  --out $OUT/teacher_throughput_gpu.json
D=runs/smoke
python3 -m ssdd teacher -c demo_teacher out_dir=$D/teacher optim.epochs=3 probe.iterations=200
python3 -m ssdd distill -c demo_distill teacher=$D/teacher/teacher out_dir=$D/krr outer.steps=60
python3 -m ssdd distill -c demo_distill teacher=$D/teacher/teacher out_dir=$D/random method=random
python3 -m ssdd distill -c demo_distill_boost teacher=$D/teacher/teacher out_dir=$D/boost outer.steps=60
echo "smoke passed"
