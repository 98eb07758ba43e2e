#!/usr/bin/env bash
# A GPU call copies the tracked tree (about 90 MB with the committed results and teachers) and its carried
# paths, 64 MiB at most. `on` takes artifacts/ and benchmarks/results/ out of the index, except the folders
# in KEEP (the `cpu` studies' finished stages and GPU cells), and ignores them locally, so the tree travels at
# about 24 MB (measured 2026-12-06); `off` puts them back in the index. The files themselves stay where they
# are. While `on`, a pre-commit hook refuses every commit (it would delete those files from the repository);
# run `off` right after the GPU calls, before committing what they brought back.
#   bash benchmarks/gpu/slim_tree.sh on|off
set -euo pipefail
cd "$(dirname "$0")/../.."
KEEP="benchmarks/results/cpu_equal benchmarks/results/cpu_gpu"
GIT_DIR=$(git rev-parse --git-dir)
STATE=$GIT_DIR/slim_tree
EXCLUDE=$GIT_DIR/info/exclude
HOOK=$GIT_DIR/hooks/pre-commit
export GIT_LITERAL_PATHSPECS=1
case "${1:-}" in
  on)
    [ ! -d "$STATE" ] || { echo "already on (since commit $(cat "$STATE/head")); run: $0 off"; exit 1; }
    git diff --cached --quiet || { echo "the index has staged changes: commit or unstage them first"; exit 1; }
    [ ! -e "$HOOK" ] || { echo "$HOOK exists: this script would replace it; move it away first"; exit 1; }
    mkdir -p "$STATE" "$GIT_DIR/info" "$GIT_DIR/hooks"
    git rev-parse HEAD > "$STATE/head"
    keep=$(printf '^%s/\\|' $KEEP); keep=${keep%\\|}
    git ls-files artifacts benchmarks/results | grep -v "$keep" > "$STATE/removed" || true
    git rm --cached -q --pathspec-from-file="$STATE/removed"
    { echo "# slim_tree.sh on"; echo "/artifacts/"; echo "/benchmarks/results/*"
      for k in $KEEP; do echo "!/$k/"; done; echo "# slim_tree.sh end"; } >> "$EXCLUDE"
    printf '#!/bin/sh\necho "benchmarks/gpu/slim_tree.sh is on: run it with off before committing"; exit 1\n' > "$HOOK"
    chmod +x "$HOOK"
    echo "tracked now: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes; '$0 off' undoes it" ;;
  off)
    [ -d "$STATE" ] || { echo "not on"; exit 1; }
    head=$(cat "$STATE/head")
    git reset -q "$head" --pathspec-from-file="$STATE/removed"  # the index entries as they were at 'on'
    if [ "$(git rev-parse HEAD)" != "$head" ]; then
      echo "HEAD moved since 'on' (commit ${head:0:10}): if a commit took those files out, they are staged again"
      echo "now as they were then; commit them (git commit -m 'put back the results')"
    fi
    if grep -q '^# slim_tree.sh end$' "$EXCLUDE"; then sed -i '/^# slim_tree.sh on$/,/^# slim_tree.sh end$/d' "$EXCLUDE"; fi
    rm -f "$HOOK"; rm -r "$STATE"
    git status --short | head -5 ;;
  *) echo "usage: $0 on|off"; exit 2 ;;
esac
