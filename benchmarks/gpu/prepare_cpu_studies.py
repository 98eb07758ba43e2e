"""Prepare the `cpu` studies' evaluation cells for a GPU session: the data they read, in parts that fit a call.

    python benchmarks/gpu/prepare_cpu_studies.py [--packs ../shared/data] [--out .gpu/cpu] [--part-mb 35]

The cells of `study_cpu_equal`, `study_cpu_budget` and `study_cpu_arch` read CIFAR-100 (the full-data rows,
CKA), the 5,000-image CIFAR-10 subset with its test split, and Flowers-102. This writes one tar of the
CIFAR-100 and Flowers-102 packs (WebP, decoded on the GPU machine by `unpack_pack.py`) and of
`cifar10.npz` reduced to what the cells read: the train subset exactly as `load_split` picks it (the same
images in the same order, so the loaded tensors and their fingerprints equal those of the full file; the
`subset: 5000` of the presets then keeps all of it) and the whole test split; it checks that the three
studies read the same subset with the same seed. The tar is split into parts of
at most --part-mb MB, one folder each (OUT/q1, OUT/q2, ...), to be carried one per call;
`benchmarks/gpu/cpu_studies.sh` reassembles them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
from ferry import write_parts  # benchmarks/gpu/ferry.py: the parts, one per call

from ssdd.config import DataConfig, load_config
from ssdd.data.loaders import load_split
from ssdd.study.config import StudyConfig
from ssdd.study.runner import study_evaluation_config

STUDIES = ("study_cpu_equal", "study_cpu_budget", "study_cpu_arch", "study_cpu_vit")


def cifar10_cells_subset(target: DataConfig, seed: int) -> bytes:
    """The target's .npz with its train split replaced by the images `load_split` keeps for this seed (its
    own subset, in its order), as an uncompressed .npz in memory; the other splits as they are."""
    kept = load_split(target, target.train_split, seed)
    with np.load(target.path) as archive:
        arrays = {k: archive[k] for k in archive.files if not k.endswith("_train")}
    arrays.update(x_train=kept.images.permute(0, 2, 3, 1).numpy(), y_train=kept.labels.numpy())
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", default="../shared/data", help="folder of the packed datasets")
    parser.add_argument("--data", default="data", help="folder of the decoded datasets (make data)")
    parser.add_argument("--out", default=".gpu/cpu")
    parser.add_argument("--part-mb", type=int, default=35)
    args = parser.parse_args()
    picks = []  # the CIFAR-10 images each study's evaluation reads: the same target and seed for all
    for preset in STUDIES:
        study = load_config(StudyConfig, preset, [])
        cfg = study_evaluation_config(study, Path("teacher"), [])
        picks += [(t, cfg.seed) for t in cfg.targets if t.name == "cifar10" and (t, cfg.seed) not in picks]
    if len(picks) != 1 or picks[0][0].subset <= 0:
        raise SystemExit(f"the studies read CIFAR-10 in more than one way ({picks}): cut it per study")
    target, seed = picks[0]
    target.path = str(Path(args.data) / Path(target.path).name)
    reduced = cifar10_cells_subset(target, seed)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w") as tar:
        for name in ("cifar100.npz", "flowers102_32.npz"):
            tar.add(Path(args.packs) / name, arcname=f"packs/{name}")
        info = tarfile.TarInfo("cifar10.npz")
        info.size = len(reduced)
        tar.addfile(info, io.BytesIO(reduced))
    data = blob.getvalue()
    number = write_parts(data, out, args.part_mb, "cpu_data.tar")
    print(f"{len(data) / 1e6:.1f} MB in {number} parts under {out} (sha256 {hashlib.sha256(data).hexdigest()[:16]})")


if __name__ == "__main__":
    main()
