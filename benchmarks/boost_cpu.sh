#!/usr/bin/env bash
# `cpu` scale Boost study at N = 100 on CIFAR-100 with the committed CPU teacher (docs/protocol.md):
# Boost (both modes, 3 seeds), then its ablations (each component removed; all removed = KRR-ST-shaped at
# the same steps), evaluated on the linear probe (time), 3 seeds. The KRR-ST / random / no-pre-training /
# full-data rows come from benchmarks/cpu_scale.sh (same protocol); merge_results.py puts all in one table.
# Needs `make data`. About two hours on 2 CPU cores; results in runs/cpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
SSDD=${SSDD:-.venv/bin/ssdd}
OUT=${OUT:-runs/cpu}
TEACHER=${TEACHER:-artifacts/teachers/cifar100_convnet32_cpu}  # the presets name runs/teacher_cpu/teacher

distill() {  # name, overrides...
  local name=$1; shift
  local dir="$OUT/$name"
  if [ -f "$dir/manifest.json" ]; then return; fi
  if [ -f "$dir/checkpoint.pt" ]; then
    $SSDD distill -c distill_boost_cpu teacher=$TEACHER out_dir="$dir" "$@" --no-progress --resume
  else
    $SSDD distill -c distill_boost_cpu teacher=$TEACHER out_dir="$dir" "$@" --no-progress
  fi
}

evaluate() {  # out name, extra overrides..., -- distilled dirs
  local name=$1; shift
  if [ -f "$OUT/$name/summary.md" ]; then return; fi
  $SSDD evaluate -c evaluate_cpu teacher=$TEACHER out_dir="$OUT/$name" no_pretrain=false full_data.enabled=false \
    --no-progress "$@"
}

distill boost_n100
evaluate evaluate_boost --distilled "$OUT/boost_n100"

distill boost_noparam_n100 name=boost-no-param boost.image_bases=0 boost.target_bases=0
distill boost_noaug_n100 name=boost-no-views "boost.augmentations=[identity]"
distill boost_noapprox_n100 name=boost-no-approx boost.approximation=off
distill boost_alloff_n100 name=boost-all-off boost.image_bases=0 boost.target_bases=0 \
  "boost.augmentations=[identity]" boost.approximation=off  # storage shape check; KRR-ST's row is the 2,000-step one
evaluate evaluate_boost_ablations "modes=[linear_probe]" --distilled "$OUT/boost_noparam_n100" \
  "$OUT/boost_noaug_n100" "$OUT/boost_noapprox_n100"

.venv/bin/python benchmarks/merge_results.py "$OUT/boost_table" benchmarks/results/cpu_scale/results.json \
  "$OUT/evaluate_boost/results.json" "$OUT/evaluate_boost_ablations/results.json"
