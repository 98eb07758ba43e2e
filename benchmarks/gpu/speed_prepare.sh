#!/usr/bin/env bash
# Before the GPU calls of benchmarks/gpu/speed_run.sh, here (no GPU needed): fill the ignored folder .gpu/speed,
# which the calls carry, with what benchmarks/gpu/speed.py needs and the GPU machine cannot fetch:
#   old/src      the old code, commit OLD (default c04162e, the base of issue 25), by `git archive`
#   official/    the official KRR-ST code (github db-Lee/selfsup_dd), exported from a git mirror of it (OFFICIAL_GIT,
#                default the `fetch` tool's /work/.mirror/db-Lee+selfsup_dd/repo) or copied from a folder
#                (OFFICIAL_DIR); skipped with a line when neither exists (speed.py then skips that part)
#   site/        omegaconf, pure Python, which the GPU image lacks, copied from the Python that runs this (PY)
#   teacher/     the committed GPU teacher and distilled/ its three N = 100 sets: with the tree slimmed by
#                benchmarks/gpu/slim_tree.sh (the full tree is over the 64 MiB a call carries), artifacts/ stays here
# It ends with the sizes: .gpu/speed and the slimmed tree must stay under 64 MiB together.
#   bash benchmarks/gpu/speed_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${OLD:-c04162e}
OFFICIAL_GIT=${OFFICIAL_GIT:-/work/.mirror/db-Lee+selfsup_dd/repo}
OFFICIAL_DIR=${OFFICIAL_DIR:-}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
S=.gpu/speed
TEACHER=artifacts/teachers/cifar100_resnet18_bt80_h200
SETS=artifacts/distilled/cifar100_resnet18_bt80_h200
git check-ignore -q .gpu/ || { echo ".gpu/ is not ignored: check .gitignore"; exit 1; }
rm -rf $S && mkdir -p $S/old $S/official $S/site $S/distilled
git archive "$OLD" src | tar -x -C $S/old
echo "$OLD $(git rev-parse "$OLD")" > $S/old/COMMIT
if [ -n "$OFFICIAL_DIR" ] && [ -d "$OFFICIAL_DIR" ]; then
  cp -r "$OFFICIAL_DIR"/algorithms "$OFFICIAL_DIR"/models "$OFFICIAL_DIR"/data "$OFFICIAL_DIR"/model_pool.py \
    "$OFFICIAL_DIR"/utils.py $S/official/
elif git --git-dir="$OFFICIAL_GIT" rev-parse -q --verify HEAD >/dev/null 2>&1; then
  git --git-dir="$OFFICIAL_GIT" archive HEAD algorithms models data model_pool.py utils.py | tar -x -C $S/official
  git --git-dir="$OFFICIAL_GIT" rev-parse HEAD > $S/official/COMMIT
else
  echo "no official KRR-ST code (OFFICIAL_GIT=$OFFICIAL_GIT, OFFICIAL_DIR=$OFFICIAL_DIR): that part will be skipped"
  rmdir $S/official
fi
omegaconf=$("$PY" -c "import omegaconf, os; print(os.path.dirname(omegaconf.__file__))")
cp -r "$omegaconf" $S/site/
cp -r "$omegaconf"-*.dist-info $S/site/
cp -r $TEACHER $S/teacher
for set in boost_n100 krr_st_n100 random_n100; do cp -r $SETS/$set $S/distilled/; done
find $S -name __pycache__ -prune -exec rm -rf {} +
echo ".gpu/speed: $(du -sb $S | cut -f1) bytes ($(du -sh $S | cut -f1)); tracked tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes"
echo "(a call carries the tracked tree plus .gpu/speed, 64 MiB at most: run 'benchmarks/gpu/slim_tree.sh on' first)"
