#!/usr/bin/env bash
# First two of the three GPU calls before evaluate_reference.sh: park one part of the CIFAR-100 pack
# (.gpu/pN) in PACK_DIR; with --smoke, also run `ssdd evaluate` on CUDA for a few steps of every stage
# (random pixels as source and target) with the committed GPU teacher and sets, so a broken CUDA path
# shows before the long call.
#   bash benchmarks/gpu/park_eval.sh PACK_DIR N [--smoke]
set -euo pipefail
PACK=$1; N=$2
source benchmarks/gpu/setup.sh
mkdir -p "$PACK" && cp .gpu/p$N/* "$PACK"/ && echo "parked: $(ls "$PACK")"
if [ "${3:-}" = "--smoke" ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "
import numpy as np
g = np.random.default_rng(0)
np.savez('/tmp/noise.npz', x_train=g.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8),
         y_train=g.integers(0, 10, 600), x_test=g.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8),
         y_test=g.integers(0, 10, 200))"
  A=artifacts/distilled/cifar100_resnet18_bt80_h200
  timeout 120 python3 -m ssdd evaluate -c evaluate_full seeds=1 'source={source: npz, path: /tmp/noise.npz}' \
    'targets=[{source: npz, path: /tmp/noise.npz, name: noise}]' teacher=artifacts/teachers/cifar100_resnet18_bt80_h200 \
    pretrain.epochs=3 full_data.epochs=1 full_data.same_recipe=true finetune.iterations=30 \
    finetune.small_iterations=30 probe.iterations=30 cka_images=100 out_dir=runs/smoke_eval --allow-mismatch \
    --distilled $A/boost_n100 $A/random_n100 && echo "smoke passed"
fi
