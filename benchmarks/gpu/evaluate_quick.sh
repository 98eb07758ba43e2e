#!/usr/bin/env bash
# Third GPU call of the reference run, on the machine still warm from reference.sh: a reduced evaluation
# of its three N = 100 sets (protocol of preset evaluate_full with CIFAR-100 as the only target,
# 1 seed, pre-training capped at 2,000 SGD steps, fine-tuning 2,000 iterations; probe as configured).
#   bash benchmarks/gpu/evaluate_quick.sh OUT
set -euo pipefail
OUT=$1
source benchmarks/gpu/setup.sh
mkdir -p "$OUT/eval"
python3 -m ssdd evaluate -c evaluate_full 'targets=[{source: npz, path: data/cifar100.npz, name: cifar100}]' \
  seeds=1 pretrain.max_iterations=2000 finetune.iterations=2000 out_dir="$OUT/eval" \
  --distilled runs/full/boost_n100 runs/full/krr_st_n100 runs/full/random_n100
