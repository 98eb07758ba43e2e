#!/usr/bin/env bash
# Here, before the GPU calls of one reference-study stage (benchmarks/gpu/reference_stage.sh): fill the ignored
# .gpu/ref with the parts (benchmarks/gpu/ferry.py) of everything the stage reads that the tracked tree, slimmed
# by benchmarks/gpu/slim_tree.sh, does not carry:
#   site/        omegaconf (pure Python, its parser vendored), which the GPU image lacks
#   packs/       the WebP packs of the datasets the stage reads (PACKS, default ../shared/data): CIFAR-100 for
#                every stage, CIFAR-10 and Flowers-102 for `evaluate`, CIFAR-10 for `arch`
#   reference/   what artifacts/reference holds for it: the finished teacher (every stage after it), the checkpoint
#                parts of the stage's paused run (parts/STAGE), the finished sets and the evaluation so far
#                (evaluate/, or evaluate_arch/ for `arch`, and the parts of a full-data row's pre-training cut at
#                the last deadline: evaluate_pretrain/)
# The calls, back to back on the warm machine (it goes back 30 s after a call):
#   run: mkdir -p /tmp/pack && cp .gpu/ref/qN/* /tmp/pack/                carry: [".gpu/ref/qN"], N = 1 .. K-1
#   run: bash benchmarks/gpu/reference_stage.sh STAGE "$OUT" MINUTES      carry: [".gpu/ref/qK", ".gpu/ref/SHA256"]
# then here: bash benchmarks/gpu/slim_tree.sh off; bash benchmarks/gpu/reference_collect.sh FILES_AT; commit.
# PART_MB (default 38) keeps each call under 64 MiB with the slimmed tree (about 24 MB; it prints both sizes).
#   bash benchmarks/gpu/reference_prepare.sh STAGE [PART_MB]
# PLAIN=DIR takes already decoded .npz files from DIR instead of packs (a CPU dry run with tiny data).
set -euo pipefail
cd "$(dirname "$0")/../.."
STAGE=$1; PART_MB=${2:-38}
PACKS=${PACKS:-../shared/data}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
A=artifacts/reference
git check-ignore -q .gpu/ || { echo ".gpu/ is not ignored: check .gitignore"; exit 1; }
S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/site" "$S/reference"
omegaconf=$("$PY" -c "import omegaconf, os; print(os.path.dirname(omegaconf.__file__))")
cp -r "$omegaconf" "$omegaconf"-*.dist-info "$S/site/"
case $STAGE in
  evaluate) datasets="cifar100 cifar10 flowers102_32" ;;
  arch) datasets="cifar100 cifar10" ;;
  teacher|random|kmeans|krr_st|boost|mkdt) datasets="cifar100" ;;
  *) echo "STAGE: teacher, random, kmeans, krr_st, boost, mkdt, evaluate or arch (not $STAGE)"; exit 2 ;;
esac
done_file=$([ "$STAGE" = teacher ] && echo $A/teacher/manifest.json || echo "$A/sets/${STAGE}_n100/manifest.json")
if [ -f "$done_file" ]; then echo "$STAGE: finished in an earlier session ($done_file); nothing to run"; exit 1; fi
for name in $datasets; do
  if [ -n "${PLAIN:-}" ]; then mkdir -p "$S/data" && cp "$PLAIN/$name.npz" "$S/data/"
  else mkdir -p "$S/packs" && cp "$PACKS/$name.npz" "$S/packs/"; fi
done
if [ "$STAGE" != teacher ]; then
  [ -f $A/teacher/manifest.json ] || { echo "$A/teacher: no finished teacher yet (run the teacher stage first)"; exit 1; }
  cp -r $A/teacher "$S/reference/teacher"
fi
if [ -d "$A/parts/$STAGE" ]; then mkdir -p "$S/reference/parts" && cp -r "$A/parts/$STAGE" "$S/reference/parts/"; fi
if [ "$STAGE" = evaluate ] || [ "$STAGE" = arch ]; then
  [ -d $A/sets ] || { echo "$A/sets: no finished set to evaluate yet"; exit 1; }
  cp -r $A/sets "$S/reference/sets"
  name=$([ "$STAGE" = arch ] && echo evaluate_arch || echo evaluate)
  if [ -d "$A/$name" ]; then cp -r "$A/$name" "$S/reference/$name"; fi
  if [ -d "$A/${name}_pretrain" ]; then cp -r "$A/${name}_pretrain" "$S/reference/${name}_pretrain"; fi
fi
find "$S" -name __pycache__ -prune -exec rm -rf {} +
"$PY" benchmarks/gpu/ferry.py split .gpu/ref --part-mb "$PART_MB" "$S"/*
cat .gpu/ref/CONTENTS | awk '{ s += $1 } END { printf "%d files, %.1f MB\n", NR, s / 1e6 }'
echo "tracked tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes; slimmed (slim_tree.sh on) about 24 MB:"
echo "with a part of $PART_MB MB a call carries about $((24 + PART_MB)) MB of the 67 MB (64 MiB) it may"
