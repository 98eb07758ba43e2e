#!/usr/bin/env bash
# The device calls of the speed benchmark (benchmarks/gpu/speed.py, docs/performance.md "Benchmark"): two calls
# of about 5.5 minutes each on one warm machine, old code (c04162e) and new code side by side on the same card.
# Here, first (no GPU needed), in the checkout the session sends:
#   bash benchmarks/gpu/device_torch_check.sh    # the suite under the GPU image's torch 2.11 (after code changes)
#   bash benchmarks/gpu/speed_prepare.sh        # fills the ignored .gpu/speed (old src, official code, omegaconf,
#                                               # the committed GPU teacher and sets), about 27 MB
#   .venv/bin/python benchmarks/gpu/speed.py --check --out /tmp/check.json [NEW-ARGS...]   # the new code accepts them
#   bash benchmarks/gpu/slim_tree.sh on         # the tracked tree (about 104 MB) travels at about 24 MB: with
#                                               # .gpu/speed about 51 MB of the 64 MiB a call carries
# Then, back to back (the machine stays warm for 30 s between calls):
#   run: bash benchmarks/gpu/speed_run.sh 1 "$OUT" [NEW-ARGS...]   carry: [".gpu/speed"]   timeout_s: 400
#   run: bash benchmarks/gpu/speed_run.sh 2 "$OUT" [NEW-ARGS...]   carry: [".gpu/speed"]   timeout_s: 370
#   give_back
# or, to spend one machine start and one transfer less, everything in one call (shorter shares per part):
#   run: bash benchmarks/gpu/speed_run.sh all "$OUT" [NEW-ARGS...]   carry: [".gpu/speed"]   timeout_s: 600
# and here again:
#   bash benchmarks/gpu/slim_tree.sh off
#   python benchmarks/gpu/speed_table.py speed_1.json speed_2.json   # from the calls' files_at: the table
# Call 1: the bf16 rate, the FLOP counts, teacher, KRR-ST and Boost (old and new), the official KRR-ST code.
# Call 2: the bf16 rate, the FLOP counts, the teacher step by part (plain and fast), one evaluation cell (old and
# new), the full protocol (new) until the
# deadline. NEW-ARGS go to speed.py, e.g. --new-teacher-args "compile=off" --new-distill-args "outer.fast=on"
# (the new code's fast-path settings; default none: the new code's defaults, `auto` = on on CUDA; the new
# KRR-ST run always has its teacher cache, on 2,000 images) and --variant STAGE:NAME:OVERRIDES for one more
# new-code run, e.g. call 1 with  --variant "boost:bf16:outer.precision=bf16 outer.teacher_precision=bf16"
# and call 2 with  --new-eval-args "precision=bf16"  (the evaluation's bf16 is opt-in; fp32 is the default).
# The compiled pool members (outer.compile, off by default) need a variant of their own, e.g.
#   --variant "krr_st:compiled:outer.compile=on outer.teacher_cache=on data.subset=2000"
# best in a call of its own (PARTS=rate,flops,distill: the old and new runs beside it): its compiling (tens of
# seconds) comes out of the run's share, and each variant shortens the others' shares. The evaluation's compiled
# networks (compile, off by default) likewise: --variant "evaluate:compiled:compile=on precision=bf16" in a call
# with PARTS=rate,flops,evaluate (a cell old, new and compiled).
# SECONDS_ALLOWED (default 330, 300, all: 540) is speed.py's --seconds; PARTS (default: the call's) its --parts.
# Device time: a start (1 to 2 minutes), then about 5.7 and 5.2 minutes, transfers beside: about 13 of the
# session's 15 minutes (all: about 11).
# Results: OUT/speed_N.json (rewritten after every part, so a call stopped early still returns numbers),
# OUT/speed_N.log (each stage's output), OUT/speed_N.out (this call's output).
set -euo pipefail
CALL=$1; OUT=$2; shift 2
case $CALL in
  1) DEFAULT_PARTS=rate,flops,teacher,distill,official; DEFAULT_SECONDS=330 ;;
  2) DEFAULT_PARTS=rate,flops,parts,evaluate,protocol; DEFAULT_SECONDS=300 ;;
  all) DEFAULT_PARTS=rate,flops,teacher,distill,official,parts,evaluate,protocol; DEFAULT_SECONDS=540 ;;
  *) echo "usage: $0 1|2|all OUT [speed.py options]"; exit 2 ;;
esac
PARTS=${PARTS:-$DEFAULT_PARTS}
[ -d .gpu/speed/old/src ] || { echo ".gpu/speed is missing: run benchmarks/gpu/speed_prepare.sh and carry .gpu/speed"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || true
export PYTHONPATH=$PWD/.gpu/speed/site PYTHONUNBUFFERED=1
set -o pipefail
python3 benchmarks/gpu/speed.py --out "$OUT/speed_$CALL.json" --seconds "${SECONDS_ALLOWED:-$DEFAULT_SECONDS}" \
  --parts $PARTS --work /tmp/ssdd_speed_$CALL "$@" 2>&1 | tee "$OUT/speed_$CALL.out"
