#!/usr/bin/env bash
# A GPU call copies the tracked tree (about 90 MB with the committed results and teachers) and its carried
# paths, 64 MiB at most. `on` takes artifacts/ and benchmarks/results/ out of the index, except the folders
# named in KEEP (the `cpu` studies' finished stages), and ignores them locally, so the tree travels at about
# 16 MB; `off` puts the index back as HEAD has it. Run `off` right after the GPU calls: while `on`, git status
# shows those files as deleted from the index (the files themselves stay where they are).
#   bash benchmarks/gpu/slim_tree.sh on|off
set -euo pipefail
cd "$(dirname "$0")/../.."
KEEP="benchmarks/results/cpu_equal benchmarks/results/cpu_gpu"
EXCLUDE=.git/info/exclude
case "${1:-}" in
  on)
    git diff --cached --quiet || { echo "the index has staged changes: commit or unstage them first"; exit 1; }
    keep=$(printf '^%s/\\|' $KEEP); keep=${keep%\\|}
    git ls-files artifacts benchmarks/results | grep -v "$keep" | git rm --cached -q --pathspec-from-file=-
    { echo "# slim_tree.sh on"; echo "/artifacts/"; echo "/benchmarks/results/*"
      for k in $KEEP; do echo "!/$k/"; done; echo "# slim_tree.sh end"; } >> $EXCLUDE
    echo "tracked now: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes" ;;
  off)
    git reset -q -- artifacts benchmarks/results
    sed -i '/^# slim_tree.sh on$/,/^# slim_tree.sh end$/d' $EXCLUDE
    git status --short | head -5 ;;
  *) echo "usage: $0 on|off"; exit 2 ;;
esac
