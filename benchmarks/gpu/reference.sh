#!/usr/bin/env bash
# The GPU reference run (one call): decode CIFAR-100, train the ResNet-18 Barlow Twins teacher
# (preset teacher_cifar100, EPOCHS epochs, fp16 artifact), then distil at N = 100 the random
# subset, Boost (preset cifar100) and KRR-ST (preset distill_krr_st_cifar100) with the
# given outer-step counts, each stopped at the deadline (a stage with too little time left is skipped). Everything worth keeping is copied to OUT as
# soon as it exists.
#   bash benchmarks/gpu/reference.sh PACK_DIR OUT EPOCHS BOOST_STEPS KRR_STEPS SECONDS
set -euo pipefail
PACK=$1; OUT=$2; EPOCHS=$3; BOOST_STEPS=$4; KRR_STEPS=$5; SECONDS_ALLOWED=$6
START=$(date +%s); DEADLINE=$((START + SECONDS_ALLOWED))
say() { echo "[$(( $(date +%s) - START )) s] $*"; }
left() { echo $(( DEADLINE - $(date +%s) )); }
source benchmarks/gpu/setup.sh
cat "$PACK"/cifar100.part_* > /tmp/cifar100_pack.npz
python3 benchmarks/gpu/unpack_pack.py /tmp/cifar100_pack.npz data/cifar100.npz
say "data decoded"
T=runs/teacher_cifar100
python3 -m ssdd teacher -c teacher_cifar100 optim.epochs=$EPOCHS out_dir=$T
mkdir -p "$OUT/teacher" && cp $T/teacher/* "$OUT/teacher/"
tar cf "$OUT/teacher_run.tar" -C runs --exclude=checkpoint.pt --exclude=teacher/teacher teacher_cifar100
say "teacher done"
keep() {  # keep NAME: archive a distilled run without its checkpoint
  tar cf "$OUT/distilled_$1.tar" -C runs/full --exclude=checkpoint.pt "$1_n100" || true
}
python3 -m ssdd distill -c distill_krr_st_cifar100 teacher=$T/teacher method=random \
  out_dir=runs/full/random_n100 && keep random
say "random done"
if [ "$(left)" -gt 160 ]; then
  timeout $(( $(left) - 100 )) python3 -m ssdd distill -c cifar100 teacher=$T/teacher \
    outer.steps=$BOOST_STEPS checkpoint_every=100000 || say "boost stopped (deadline or error)"
  keep boost; say "boost done"
else say "boost skipped: $(left) s left"; fi
if [ "$(left)" -gt 70 ]; then
  timeout $(( $(left) - 10 )) python3 -m ssdd distill -c distill_krr_st_cifar100 teacher=$T/teacher \
    outer.steps=$KRR_STEPS checkpoint_every=100000 || say "krr_st stopped (deadline or error)"
  keep krr_st; say "krr_st done"
else say "krr_st skipped: $(left) s left"; fi
