#!/usr/bin/env bash
# Last of three GPU calls (the first two park the parts .gpu/p1 and .gpu/p2 of the CIFAR-100 pack in
# PACK_DIR; this one carries .gpu/p3): decode CIFAR-100 and run the `full` evaluation protocol (preset
# evaluate_full: ConvNet-128, pre-train 1000 epochs, fine-tune 10,000 iterations, linear probe 5,000)
# of the 80-epoch GPU teacher's N = 100 sets on the CIFAR-100 target, seed after seed, until SECONDS
# have passed. The full-data row with the distilled rows' recipe (1,000 epochs over 50,000 images) is
# left out for time; the tuned full-data row runs last in each seed. Cells finished before the deadline
# are kept (results.json is written after every cell) and come back in OUT/evaluate.tar.
#   bash benchmarks/gpu/evaluate_reference.sh PACK_DIR OUT SECONDS
set -euo pipefail
PACK=$1; OUT=$2; SECONDS_ALLOWED=$3
START=$(date +%s); DEADLINE=$((START + SECONDS_ALLOWED))
say() { echo "[$(( $(date +%s) - START )) s] $*"; }
source benchmarks/gpu/setup.sh
cp .gpu/p3/* "$PACK"/
cat "$PACK"/cifar100.part_* > /tmp/cifar100_pack.npz
sha256sum /tmp/cifar100_pack.npz
python3 benchmarks/gpu/unpack_pack.py /tmp/cifar100_pack.npz data/cifar100.npz
say "data decoded"
A=artifacts/distilled/cifar100_resnet18_bt80_h200
E=runs/full/evaluate_bt80
mkdir -p $E
save() { tar cf "$OUT/evaluate.tar" -C runs/full evaluate_bt80; say "saved"; }
trap save EXIT
timeout $(( DEADLINE - $(date +%s) - 10 )) python3 -m ssdd evaluate -c evaluate_full \
  'targets=[{source: npz, path: data/cifar100.npz, name: cifar100}]' \
  teacher=artifacts/teachers/cifar100_resnet18_bt80_h200 full_data.same_recipe=false out_dir=$E \
  --distilled $A/boost_n100 $A/krr_st_n100 $A/random_n100 2>&1 | tee $E/log.txt || say "evaluation stopped (deadline or error)"
