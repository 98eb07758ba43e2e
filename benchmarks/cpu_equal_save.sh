#!/bin/bash
# Copy the finished stages of runs/cpu_equal (stage.json present; no checkpoints) and its part-* evaluations
# into benchmarks/results/cpu_equal, so that a fresh checkout continues there (its README says how).
#   bash benchmarks/cpu_equal_save.sh
set -eu
cd "$(dirname "$0")/.."
for src in runs/cpu_equal/distill/*/; do
  src=${src%/}; name=$(basename $src)
  [ -f $src/stage.json ] || continue
  case $name in boost-1k_n100-*) continue;; esac  # the full-kernel 1,000-step run, dropped from the preset
  dst=benchmarks/results/cpu_equal/distill/$name
  [ -f $dst/stage.json ] && continue
  mkdir -p $dst
  (cd $src && find . -type f ! -name checkpoint.pt) | while read f; do mkdir -p $dst/$(dirname $f); cp -p $src/$f $dst/$f; done
  echo "copied $name"
done
for src in runs/cpu_equal/evaluate/part-*/; do
  src=${src%/}; name=$(basename $src); dst=benchmarks/results/cpu_equal/evaluate/$name
  mkdir -p $dst
  for f in results.json results.csv config.yaml inputs.json summary.json summary.md results.png; do
    if [ -f $src/$f ]; then cp -p $src/$f $dst/$f; fi
  done
  echo "copied evaluation $name"
done
