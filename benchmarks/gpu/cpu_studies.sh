#!/usr/bin/env bash
# The last GPU call of a session that measures the `cpu` studies' evaluation cells on the GPU, many cells at
# a time (torchrun, PROCS processes sharing the one GPU; gloo links them). Before it, one call per data part
# parks the parts prepared by `python benchmarks/gpu/prepare_cpu_studies.py` (.gpu/cpu/q1 ... q5, 35 MB
# each, so that a call with the tree slimmed by benchmarks/gpu/slim_tree.sh stays under 64 MiB):
#   run: mkdir -p /tmp/pack && cp .gpu/cpu/qN/* /tmp/pack/                  (carry: .gpu/cpu/qN), N = 1 to 4
#   run: bash benchmarks/gpu/cpu_studies.sh /tmp/pack "$OUT" 540 8 study_cpu_equal study_cpu_budget study_cpu_arch:1 study_cpu_arch
#        (carry: .gpu/whl, .gpu/cpu/q5, .gpu/cpu/SHA256)
# It checks and unpacks the data into data/, restores the studies' finished teacher and sets from
# benchmarks/results/cpu_equal into runs/cpu_gpu, and runs `benchmarks/study_cells.py` for each PRESET in turn
# (PRESET:N measures only its first N seeds) until SECONDS have passed; the cells come back in
# OUT/cpu_gpu_evaluate.tar (evaluate/part-<study>/). Cells already in a carried benchmarks/results/cpu_gpu are
# resumed, not measured again. DEVICE=cpu tries it all on a CPU, in a copy of the checkout (it writes data/).
set -euo pipefail
PACK=$1; OUT=$2; SECONDS_ALLOWED=$3; PROCS=$4; shift 4
START=$(date +%s); DEADLINE=$((START + SECONDS_ALLOWED))
say() { echo "[$(( $(date +%s) - START )) s] $*"; }
source benchmarks/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -e data/cifar10.npz ] && [ ! -e data/.cpu_cells ]; then  # the cut file would replace a full CIFAR-10
  echo "data/cifar10.npz exists: run this in a copy of the checkout (the GPU machine's), not beside your data"
  exit 1
fi
mkdir -p "$PACK" /tmp/cpu_data data && cp .gpu/cpu/q*/* "$PACK"/
ls "$PACK"
want=$(cat .gpu/cpu/SHA256)
got=$(cat "$PACK"/cpu_data.tar.* | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "the parked data is incomplete or damaged (sha256 $got, want $want)"; exit 1; }
cat "$PACK"/cpu_data.tar.* | tar x -C /tmp/cpu_data
python3 benchmarks/gpu/unpack_pack.py /tmp/cpu_data/packs/cifar100.npz data/cifar100.npz --workers 16
python3 benchmarks/gpu/unpack_pack.py /tmp/cpu_data/packs/flowers102_32.npz data/flowers102_32.npz --workers 16
mv /tmp/cpu_data/cifar10.npz data/cifar10.npz
echo "CIFAR-10 cut to the cpu studies' 5,000-image subset (benchmarks/gpu/prepare_cpu_studies.py)" > data/.cpu_cells
say "data ready"
R=runs/cpu_gpu
mkdir -p $R/evaluate
cp -r benchmarks/results/cpu_equal/teacher benchmarks/results/cpu_equal/distill $R/
for part in benchmarks/results/cpu_gpu/evaluate/part-*; do if [ -d "$part" ]; then cp -r "$part" $R/evaluate/; fi; done
save() { tar cf "$OUT/cpu_gpu_evaluate.tar" -C $R evaluate; say "saved"; }
trap save EXIT
export OMP_NUM_THREADS=$(( 16 / PROCS > 0 ? 16 / PROCS : 1 ))
for spec in "$@"; do
  preset=${spec%%:*}; seeds=()
  if [ "$preset" != "$spec" ]; then seeds=(--seeds "${spec#*:}"); fi
  left=$(( DEADLINE - $(date +%s) - 15 ))
  if [ $left -lt 30 ]; then say "no time left for $spec"; break; fi
  say "$spec: up to $left s on $PROCS processes"
  log=$R/evaluate/$preset.log
  set +e
  timeout -k 10 $left python3 -m torch.distributed.run --standalone --nproc_per_node "$PROCS" \
    benchmarks/study_cells.py "$preset" out_dir=$R --device "${DEVICE:-cuda}" --no-progress "${seeds[@]}" >> $log 2>&1
  rc=$?
  set -e
  grep -v "^\s*$" $log | grep -v "^  File\|^    " | tail -n 12 || true
  left=$(( DEADLINE - $(date +%s) - 15 ))
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $left -ge 30 ]; then  # not the deadline: the same cells, one process
    say "torchrun failed (exit $rc); one process for up to $left s"
    timeout -k 10 $left python3 benchmarks/study_cells.py "$preset" out_dir=$R --device "${DEVICE:-cuda}" --no-progress \
      "${seeds[@]}" >> $log 2>&1 || say "$spec stopped (deadline or error)"
    tail -n 5 $log
  fi
done
