#!/usr/bin/env bash
# First of two GPU calls: park the first part of the CIFAR-100 pack outside the checkout (the second call
# carries the second part), and run the CUDA paths of the digits demo briefly so a broken path shows
# before the long call.
#   bash benchmarks/gpu/park.sh
set -uo pipefail
source benchmarks/gpu/setup.sh
mkdir -p /tmp/pack && cp .gpu/a/* /tmp/pack/ && echo "parked: $(ls /tmp/pack)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
D=runs/smoke
timeout 90 python3 -m ssdd teacher -c demo_teacher out_dir=$D/teacher optim.epochs=1 probe.iterations=50 \
  && timeout 60 python3 -m ssdd distill -c demo_distill_boost teacher=$D/teacher/teacher out_dir=$D/boost \
    outer.steps=20 && echo "smoke passed"
