#!/usr/bin/env bash
# `cpu` scale comparison at N = 100 on CIFAR-100 with the committed CPU teacher (docs/protocol.md):
# random subset vs KRR-ST (vs k-means with KMEANS=1) vs no pre-training vs full data, targets CIFAR-10 and
# Flowers-102, 3 seeds. Needs `make data`. About an hour on 2 CPU cores; results in runs/cpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
SSDD=${SSDD:-.venv/bin/ssdd}
OUT=${OUT:-runs/cpu}
TEACHER=${TEACHER:-artifacts/teachers/cifar100_convnet32_cpu}  # the presets name runs/teacher_cpu/teacher
sets=("$OUT/random_n100" "$OUT/krr_st_n100")
test -f "$OUT/random_n100/manifest.json" || $SSDD distill -c distill_cpu teacher=$TEACHER method=random out_dir=$OUT/random_n100
if [ -f "$OUT/krr_st_n100/checkpoint.pt" ] && [ ! -f "$OUT/krr_st_n100/manifest.json" ]; then
  $SSDD distill -c distill_cpu teacher=$TEACHER out_dir=$OUT/krr_st_n100 --resume
elif [ ! -f "$OUT/krr_st_n100/manifest.json" ]; then
  $SSDD distill -c distill_cpu teacher=$TEACHER out_dir=$OUT/krr_st_n100
fi
if [ "${KMEANS:-0}" = 1 ]; then
  test -f "$OUT/kmeans_n100/manifest.json" || $SSDD distill -c distill_cpu teacher=$TEACHER method=kmeans out_dir=$OUT/kmeans_n100
  sets+=("$OUT/kmeans_n100")
fi
$SSDD evaluate -c evaluate_cpu teacher=$TEACHER out_dir=$OUT/evaluate --no-progress --distilled "${sets[@]}"
