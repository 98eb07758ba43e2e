#!/usr/bin/env bash
# One GPU call: the `full` evaluation protocol (preset evaluate_full: ConvNet-128, pre-train 1,000 epochs,
# fine-tune 5,000 iterations, linear probe 5,000) of the 80-epoch GPU teacher's N = 100 sets on the
# Flowers-102 target, seed after seed, until SECONDS have passed. Flowers-102 (25 MB) travels in
# .gpu/flowers/ (carry it); CIFAR-100 does not, so the full-data rows and CKA (which read it) are left out.
# Cells finished before the deadline are kept (results.json is written after every cell) and come back in
# OUT/evaluate_flowers.tar.
#   mkdir -p .gpu/flowers && cp data/flowers102_32.npz .gpu/flowers/
#   run: bash benchmarks/gpu/evaluate_flowers.sh "$OUT" 540     (carry: .gpu/whl, .gpu/flowers)
set -euo pipefail
OUT=$1; SECONDS_ALLOWED=$2
START=$(date +%s); DEADLINE=$((START + SECONDS_ALLOWED))
say() { echo "[$(( $(date +%s) - START )) s] $*"; }
source benchmarks/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
A=artifacts/distilled/cifar100_resnet18_bt80_h200
E=runs/full/evaluate_bt80_flowers
mkdir -p $E
save() { tar cf "$OUT/evaluate_flowers.tar" -C runs/full evaluate_bt80_flowers; say "saved"; }
trap save EXIT
timeout $(( DEADLINE - $(date +%s) - 10 )) python3 -m ssdd evaluate -c evaluate_full \
  'targets=[{source: npz, path: .gpu/flowers/flowers102_32.npz, name: flowers102}]' \
  teacher=artifacts/teachers/cifar100_resnet18_bt80_h200 full_data.enabled=false full_data.same_recipe=false \
  cka_images=0 seeds=2 out_dir=$E --no-progress \
  --distilled $A/boost_n100 $A/krr_st_n100 $A/random_n100 2>&1 | tee $E/log.txt || say "evaluation stopped (deadline or error)"
