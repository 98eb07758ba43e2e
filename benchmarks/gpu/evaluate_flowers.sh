#!/usr/bin/env bash
# One GPU call: the `full` evaluation protocol (preset evaluate_full: pre-train 1,000 epochs, fine-tune 5,000
# iterations, linear probe 5,000) of the 80-epoch GPU teacher's N = 100 sets on the Flowers-102 target, seed
# after seed, until SECONDS have passed. The network is the preset's ConvNet-128 unless MODEL names another
# (e.g. resnet18, at its default width); SEEDS defaults to 3. Flowers-102 (25 MB) travels in .gpu/flowers/
# (carry it); CIFAR-100 does not, so the full-data rows and CKA (which read it) are left out. Cells finished
# before the deadline are kept (results.json is written after every cell) and come back in OUT as a tar.
#   mkdir -p .gpu/flowers && cp data/flowers102_32.npz .gpu/flowers/
#   run: bash benchmarks/gpu/evaluate_flowers.sh "$OUT" 520 [MODEL [SEEDS]]   (carry: .gpu/whl, .gpu/flowers)
set -euo pipefail
OUT=$1; SECONDS_ALLOWED=$2; MODEL=${3:-}; SEEDS=${4:-3}
START=$(date +%s); DEADLINE=$((START + SECONDS_ALLOWED))
say() { echo "[$(( $(date +%s) - START )) s] $*"; }
source benchmarks/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
A=artifacts/distilled/cifar100_resnet18_bt80_h200
NAME=evaluate_bt80_flowers${MODEL:+_$MODEL}
E=runs/full/$NAME
MODELS=()
if [ -n "$MODEL" ]; then MODELS=("models=[{name: $MODEL}]"); fi
mkdir -p $E
save() { tar cf "$OUT/$NAME.tar" -C runs/full "$NAME"; say "saved"; }
trap save EXIT
timeout $(( DEADLINE - $(date +%s) - 10 )) python3 -m ssdd evaluate -c evaluate_full \
  'targets=[{source: npz, path: .gpu/flowers/flowers102_32.npz, name: flowers102}]' "${MODELS[@]}" \
  teacher=artifacts/teachers/cifar100_resnet18_bt80_h200 full_data.enabled=false full_data.same_recipe=false \
  cka_images=0 seeds=$SEEDS out_dir=$E --no-progress \
  --distilled $A/boost_n100 $A/krr_st_n100 $A/random_n100 2>&1 | tee $E/log.txt || say "evaluation stopped (deadline or error)"
