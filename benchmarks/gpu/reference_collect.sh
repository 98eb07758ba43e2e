#!/usr/bin/env bash
# Here, after a call of benchmarks/gpu/reference_stage.sh: put what it brought back (the call's files_at) into
# artifacts/reference, where the next stage and the next session find it, then commit:
#   teacher/, teacher_run.tar   -> artifacts/reference/teacher (the artifact), teacher_run/ (history, curves, logs);
#                                  the teacher's parts go
#   NAME.tar                    -> artifacts/reference/sets/NAME_n100 (a finished set); its parts go
#   NAME_parts/                 -> artifacts/reference/parts/NAME (a paused run's checkpoint, replacing the last)
#   mkdt.tar                    -> artifacts/reference/sets/mkdt_n100, high_loss_n100 and experts/ (its manifest)
#   evaluate.tar, evaluate_arch.tar -> artifacts/reference/evaluate, evaluate_arch (the cells so far), and
#   evaluate_pretrain_CELL/     -> evaluate_pretrain/CELL (a full-data row's pre-training cut at the deadline)
#   bash benchmarks/gpu/reference_collect.sh FILES_AT
set -euo pipefail
FROM=$(cd "$1" && pwd)
cd "$(dirname "$0")/../.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
complete() {  # complete DIR: every part its index.json names is there, with its SHA-256
  PYTHONPATH=src "$PY" benchmarks/gpu/checkpoint_parts.py verify "$1"
}
A=artifacts/reference
mkdir -p $A/parts $A/sets
for item in "$FROM"/*; do
  name=$(basename "$item")
  case $name in
    teacher)
      rm -rf $A/teacher && cp -r --no-preserve=mode "$item" $A/teacher && rm -rf $A/parts/teacher ;;
    teacher_run.tar)
      rm -rf $A/teacher_run && mkdir -p $A/teacher_run && tar xf "$item" -C $A/teacher_run --strip-components=1 ;;
    evaluate_pretrain_*|evaluate_arch_pretrain_*)  # a cut pre-training's state, in parts (after the tars)
      ;;
    *_parts)
      stage=${name%_parts}
      # every part the index names, with its SHA-256, before the last good parts are replaced
      if complete "$item"; then rm -rf "$A/parts/$stage" && cp -r --no-preserve=mode "$item" "$A/parts/$stage"
      else echo "kept the earlier parts of $stage: what came back is incomplete"; fi ;;
    mkdt.tar)
      rm -rf $A/sets/mkdt_n100 $A/sets/high_loss_n100 $A/experts && tar xf "$item" -C $A ;;
    *_unfinished.tar)
      echo "left alone: $name (an unfinished run's log)" ;;
    evaluate.tar|evaluate_arch.tar)
      # the evaluation so far; a pre-training state this call brought back (complete) replaces the earlier ones,
      # which an incomplete one does not
      rm -rf "$A/${name%.tar}" && tar xf "$item" -C $A
      states=()
      for state in "$FROM/${name%.tar}_pretrain_"*; do
        if [ -d "$state" ] && complete "$state"; then states+=("$state")
        elif [ -d "$state" ]; then echo "left alone: $(basename "$state") is incomplete"; fi
      done
      if [ ${#states[@]} -gt 0 ]; then
        rm -rf "$A/${name%.tar}_pretrain" && mkdir -p "$A/${name%.tar}_pretrain"
        for state in "${states[@]}"; do
          cp -r --no-preserve=mode "$state" "$A/${name%.tar}_pretrain/${state##*_pretrain_}"
        done
      fi ;;
    *.tar)
      stage=${name%.tar}
      rm -rf "$A/sets/${stage}_n100" && tar xf "$item" -C $A/sets && rm -rf "$A/parts/$stage" ;;
    *) echo "left alone: $name" ;;
  esac
done
find $A -maxdepth 3 | sort | head -50
