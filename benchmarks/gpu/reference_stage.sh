#!/usr/bin/env bash
# One stage of the reference study (study_full's presets: ResNet-18 teacher, sets at N = 100, evaluate_full) in one
# GPU call, resumed from where an earlier session left it and left resumable for the next one. Everything a stage
# needs travels in the parts that benchmarks/gpu/reference_prepare.sh makes here (.gpu/ref/q1 ... qK, parked by
# one call each; this call carries the last one and SHA256); everything it leaves comes back under OUT (8 files):
#   teacher    ssdd teacher -c teacher_cifar100 (probe every 100 epochs): finished, OUT/teacher/ (the artifact) and
#              OUT/teacher_run.tar (its history, metrics, carried.json); paused, OUT/teacher_parts/ (the checkpoint
#              in 4 parts of 15 MiB: weights fp16, momentum int8, benchmarks/gpu/checkpoint_parts.py)
#   random kmeans krr_st boost
#              ssdd distill (distill_krr_st_cifar100, method=NAME; boost: cifar100) with the committed teacher:
#              finished, OUT/NAME.tar (the set, no checkpoint); paused, OUT/NAME_parts/ (the checkpoint without
#              the pool's 10 networks, 400+ MiB: the resume warm-starts a fresh pool, the set's pool_rebuilt_at)
#   mkdt       ssdd experts -c experts_cifar100 for EXPERTS_MINUTES (default half of MINUTES), closed at the experts
#              finished by then, then the high-loss subset and ssdd distill -c mkdt_cifar100 in the same call (both
#              read the experts, GBs that never travel): OUT/mkdt.tar (both sets and the experts' manifest, when
#              both finished; an unfinished MKDT's log in OUT/mkdt_unfinished.tar: without its experts it cannot
#              resume in another session); EXPERTS_ARGS: overrides of the experts. The experts are as many as finish in that time (the
#              preset's 100 take longer): the experts' manifest says how many
#   evaluate   ssdd evaluate -c evaluate_full --processes PROCS (default 4) on the committed teacher and sets,
#              stopped at the deadline: OUT/evaluate.tar (finished cells; the next session's --resume goes on from
#              them). The processes share the GPU, so each cell takes about PROCS times its time alone: choose
#              PROCS so that a round of cells ends inside the call (the speed benchmark's protocol part times them);
#              a cell cut at the deadline starts again in the next session
#              With checkpoint_minutes=1, a full-data row (1,000 epochs over 50,000 images) cut at the deadline
#              leaves its pre-training's state: the first such comes back in OUT/evaluate_pretrain_CELL/ (parts)
#              and the next session goes on from it
#   arch       the same with evaluate_full_arch (six networks on CIFAR-10): OUT/evaluate_arch.tar
# A stage stops itself (stop_after_minutes) MARGIN minutes (default 0.5; the teacher 1.5, for its probes) before
# MINUTES after this script starts, its set-up included, to pack what it leaves; a rerun starts again from the parts. Extra arguments go to the stage's ssdd command (e.g. optim.epochs=400).
#   bash benchmarks/gpu/reference_stage.sh STAGE OUT MINUTES [OVERRIDES...]
# DEVICE=cpu runs it on a CPU (with tiny OVERRIDES: a dry run of the whole trip, in a copy of the checkout).
set -euo pipefail
shopt -s nullglob
STAGE=$1; OUT=$2; MINUTES=$3; shift 3
START=$(date +%s)
say() { echo "[$(( $(date +%s) - START )) s] $*"; }
case $STAGE in teacher|random|kmeans|krr_st|boost|mkdt|evaluate|arch) ;;
  *) echo "STAGE: teacher, random, kmeans, krr_st, boost, mkdt, evaluate or arch (not $STAGE)"; exit 2 ;; esac
PARK=${PARK:-/tmp/pack}; F=${FERRY:-/tmp/ferry}; R=runs/ref
# a rerun on the warm machine starts again from what was carried: nothing of an earlier attempt is left
rm -rf "$F" $R
mkdir -p "$PARK" "$OUT" data $R
cp .gpu/ref/q*/* "$PARK"/ 2>/dev/null || true  # the part this call carries; the others were parked before
python3 benchmarks/gpu/ferry.py join "$PARK" "$F" --sha .gpu/ref/SHA256
export PYTHONPATH=$F/site:$PWD/src PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20
DEV=(); if [ -n "${DEVICE:-}" ]; then DEV=(device="$DEVICE"); fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for pack in "$F"/packs/*.npz; do python3 benchmarks/gpu/unpack_pack.py "$pack" "data/$(basename "$pack")"; done
for plain in "$F"/data/*.npz; do cp "$plain" data/; done  # already decoded (a dry run's)
say "inputs ready: $(ls data | tr '\n' ' ')"
T=$F/reference/teacher
# minutes kept for packing what the stage leaves (the teacher: also for a probe epoch, which the estimate of the
# next epoch's length does not foresee, and the final probe)
MARGIN=${MARGIN:-$([ "$STAGE" = teacher ] && echo 1.5 || echo 0.5)}
left() {  # minutes left before the margin; the call ends here when none are (0 would mean "no limit")
  local m; m=$(python3 -c "print(round($MINUTES - $MARGIN - ($(date +%s) - $START) / 60, 2))")
  if python3 -c "import sys; sys.exit(0 if $m >= 0.05 else 1)"; then echo "$m"; else
    say "no time left for $STAGE ($m minutes)" >&2; return 1; fi
}
parts() {  # parts RUN NAME [CODECS...]: a paused run's checkpoint into OUT/NAME_parts
  local run=$1 name=$2; shift 2
  python3 benchmarks/gpu/checkpoint_parts.py pack "$run" "$OUT/${name}_parts" --max-parts 4 "$@"  # 64 MiB back
}
resume() {  # resume RUN NAME: unpack the carried parts of a paused run; prints --resume when there were some
  if [ -f "$F/reference/parts/$2/index.json" ]; then
    python3 benchmarks/gpu/checkpoint_parts.py unpack "$F/reference/parts/$2" "$1" >&2 && echo --resume
  fi
}
case $STAGE in
  teacher)
    run=$R/teacher
    flag=$(resume $run teacher)
    minutes=$(left)
    python3 -m ssdd teacher -c teacher_cifar100 out_dir=$run probe_every=100 stop_after_minutes="$minutes" \
      "${DEV[@]}" "$@" --no-progress $flag || rc=$?  # a failure still leaves its last checkpoint to pack
    if [ -f $run/teacher/manifest.json ]; then
      cp -r $run/teacher "$OUT"/teacher
      tar cf "$OUT"/teacher_run.tar -C $R --exclude=checkpoint.pt --exclude=teacher/teacher teacher
      say "teacher finished"
    elif [ -f $run/checkpoint.pt ]; then
      parts $run teacher --codec 'model.*=fp16' --codec 'optimizer.state.*=int8'
      say "teacher paused: its checkpoint is in $OUT/teacher_parts"
    fi ;;
  random|kmeans|krr_st|boost)
    run=$R/sets/${STAGE}_n100
    if [ "$STAGE" = boost ]; then preset=(-c cifar100); else preset=(-c distill_krr_st_cifar100 method="$STAGE"); fi
    flag=$(resume "$run" "$STAGE")
    minutes=$(left)
    python3 -m ssdd distill "${preset[@]}" teacher=$T out_dir="$run" stop_after_minutes="$minutes" \
      "${DEV[@]}" "$@" --no-progress $flag || rc=$?  # a failure still leaves its last checkpoint to pack
    if [ -f "$run"/manifest.json ]; then
      tar cf "$OUT/$STAGE.tar" -C $R/sets --exclude=checkpoint.pt "${STAGE}_n100"
      say "$STAGE finished"
    elif [ -f "$run"/checkpoint.pt ]; then
      parts "$run" "$STAGE" --drop pool.members --drop pool.optimizers  # the pool: 10 networks, 400+ MiB
      say "$STAGE paused: its checkpoint is in $OUT/${STAGE}_parts"
    fi ;;
  mkdt)
    experts_minutes=${EXPERTS_MINUTES:-$(python3 -c "print($MINUTES / 2)")}
    read -ra eargs <<< "${EXPERTS_ARGS:-}"  # overrides of the experts (a dry run's tiny ones)
    python3 -m ssdd experts -c experts_cifar100 teacher=$T out_dir=$R/experts stop_after_minutes="$experts_minutes" \
      "${DEV[@]}" "${eargs[@]}" --no-progress || say "experts stopped"
    experts=($R/experts/expert-*.safetensors)
    if [ ${#experts[@]} -eq 0 ]; then say "no expert finished in $experts_minutes minutes: no MKDT"; exit 1; fi
    if [ ! -f $R/experts/manifest.json ]; then  # close the run at the experts finished by now
      python3 -m ssdd experts -c experts_cifar100 teacher=$T out_dir=$R/experts "${DEV[@]}" "${eargs[@]}" \
        num_experts="${#experts[@]}" --no-progress --resume
    fi
    say "experts: ${#experts[@]}"
    python3 -m ssdd distill -c mkdt_cifar100 method=high_loss teacher=$T out_dir=$R/sets/high_loss_n100 \
      mkdt.experts=$R/experts "${DEV[@]}" --no-progress || say "the high-loss subset failed"  # it reads them too
    minutes=$(left) && python3 -m ssdd distill -c mkdt_cifar100 teacher=$T out_dir=$R/sets/mkdt_n100 \
      mkdt.experts=$R/experts stop_after_minutes="$minutes" "${DEV[@]}" "$@" --no-progress || say "mkdt stopped"
    if [ -f $R/sets/mkdt_n100/manifest.json ] && [ -f $R/sets/high_loss_n100/manifest.json ]; then
      # both sets of these experts, with the experts' manifest and logs (their trajectories, GBs, stay)
      tar cf "$OUT"/mkdt.tar -C $R --exclude=checkpoint.pt --exclude='expert-*' experts sets/mkdt_n100 \
        sets/high_loss_n100
    fi
    if [ ! -f $R/sets/mkdt_n100/manifest.json ] && [ -d $R/sets/mkdt_n100 ]; then  # its log, for the record
      tar cf "$OUT"/mkdt_unfinished.tar -C $R --exclude=checkpoint.pt sets/mkdt_n100
    fi
    say "mkdt: $([ -f $R/sets/mkdt_n100/manifest.json ] && echo finished || echo 'not finished')" ;;
  evaluate|arch)
    name=$([ "$STAGE" = arch ] && echo evaluate_arch || echo evaluate)
    run=$R/$name
    flag=()
    if [ -d "$F/reference/$name" ]; then cp -r "$F/reference/$name" $run; flag=(--resume); fi
    for parts_dir in "$F/reference/${name}_pretrain"/*/; do  # the pre-training a deadline cut, to go on from
      cell=$(basename "$parts_dir"); mkdir -p "$run/cells" "/tmp/pretrain_in/$cell"
      python3 benchmarks/gpu/checkpoint_parts.py unpack "$parts_dir" "/tmp/pretrain_in/$cell" \
        && mv "/tmp/pretrain_in/$cell/checkpoint.pt" "$run/cells/$cell.pretrain.pt"
    done
    sets=$(for d in "$F"/reference/sets/*/; do if [ -f "$d/manifest.json" ]; then echo "${d%/}"; fi; done | paste -sd, -)
    minutes=$(left)
    seconds=$(python3 -c "print(max(1, int(60 * $minutes)))")
    timeout -s INT -k 30 "$seconds" python3 -m ssdd evaluate -c "${name/evaluate/evaluate_full}" teacher=$T \
      "distilled=[$sets]" out_dir=$run --processes "${PROCS:-4}" checkpoint_minutes=1 "${DEV[@]}" "$@" \
      --no-progress "${flag[@]}" || say "$STAGE stopped (deadline or error)"
    # a full-data row cut at the deadline leaves its pre-training's state (45 MB at evaluate_full's ConvNet): the
    # first goes back in exact parts (4 files of the 8 a call returns), any other starts again next time
    carried=0
    for state in "$run"/cells/*.pretrain.pt; do
      cell=$(basename "$state" .pretrain.pt); mkdir -p "/tmp/pretrain_out/$cell"
      mv "$state" "/tmp/pretrain_out/$cell/checkpoint.pt"
      if [ $carried -eq 0 ] && python3 benchmarks/gpu/checkpoint_parts.py pack "/tmp/pretrain_out/$cell" \
          "$OUT/${name}_pretrain_$cell" --max-parts 4; then carried=1
      else say "left behind: the pre-training state of cell $cell (it starts again next time)"; fi
    done
    if [ -d $run ]; then tar cf "$OUT/$name.tar" -C $R "$name"; fi
    say "$STAGE: $(ls $run/cells 2>/dev/null | wc -l) cells set aside, $(python3 -c "import json; print(len(json.load(open('$run/results.json'))))" 2>/dev/null || echo 0) rows" ;;
esac
ls -la "$OUT" "$OUT"/* 2>/dev/null | head -30 || true
exit "${rc:-0}"
