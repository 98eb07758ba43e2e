#!/usr/bin/env bash
# `ssdd import-teacher --format krr_st` end to end (BENCHMARKS.md, "Importing a KRR-ST teacher"): the committed
# GPU teacher written out in KRR-ST's exact checkpoint layout, imported back, compared with the original, then
# used by `ssdd distill` (KRR-ST, 5 outer steps) and `ssdd evaluate` (one seed, tiny settings). Needs
# `make data` (data/cifar100.npz, data/cifar10.npz). About 13 minutes on 2 busy CPU cores, 10 of them the
# import's linear probe (12,000 images through the ResNet-18); results in runs/import_krr_st/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SSDD=${SSDD:-.venv/bin/ssdd}
OUT=${OUT:-runs/import_krr_st}
ORIGINAL=artifacts/teachers/cifar100_resnet18_bt30_h200

$PY benchmarks/export_krr_st_teacher.py export $ORIGINAL $OUT/barlow_twins_resnet18_cifar100.pt
$SSDD import-teacher $OUT/barlow_twins_resnet18_cifar100.pt --format krr_st --dataset cifar100 \
  --out $OUT/teacher --probe-data data/cifar100.npz --probe-subset 10000 2000 --device cpu --overwrite
$PY benchmarks/export_krr_st_teacher.py compare $ORIGINAL $OUT/teacher --data data/cifar100.npz --images 1000 \
  --json benchmarks/results/import_krr_st/compare.json
rm -rf $OUT/krr_st_n10 $OUT/evaluate
$SSDD distill -c distill_cpu teacher=$OUT/teacher method=krr_st budget=10 outer.steps=5 outer.batch_size=64 \
  data.subset=2000 pool.size=2 pool.max_steps=10 log_every=1 checkpoint_every=5 out_dir=$OUT/krr_st_n10 --no-progress
$SSDD evaluate -c evaluate_cpu teacher=$OUT/teacher seeds=1 out_dir=$OUT/evaluate \
  'targets=[{source: npz, path: data/cifar10.npz, name: cifar10, subset: 1000}]' pretrain.max_iterations=50 \
  finetune.iterations=50 finetune.small_iterations=50 probe.iterations=100 full_data.enabled=false cka_images=200 \
  --no-progress --distilled $OUT/krr_st_n10
