"""Teacher training throughput (images/s) of `ssdd teacher` on CIFAR-100-shaped data.

Runs the real training code for a short epoch per backbone and reads images/s from its metrics (two
augmented views per image, forward + backward + LARS step; the first step's warm-up is included).

    python benchmarks/teacher_throughput.py                    # the default backbone list
    python benchmarks/teacher_throughput.py --images 5120 --models resnet18:64 convnet:32:3:pool

Needs data/cifar100.npz (decode it with `make data`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import tempfile
from pathlib import Path

import torch

from ssdd.config import load_config
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.train import train_teacher

DEFAULT_MODELS = ["resnet18:64", "resnet18:32", "resnet18:16", "resnet10:32", "convnet:32:3:pool", "convnet:64:3:pool"]


def model_overrides(spec: str) -> list[str]:
    name, *rest = spec.split(":")
    keys = ["model.width", "model.depth", "model.feature"]
    return [f"model.name={name}"] + [f"{k}={v}" for k, v in zip(keys, rest, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/cifar100.npz")
    parser.add_argument("--images", type=int, default=2560, help="images in the timed epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--projector", default="[2048,2048,2048]")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--overrides", nargs="*", default=[], help="extra config overrides, e.g. channels_last=off")
    parser.add_argument("--out", default="benchmarks/results/teacher_throughput.json")
    args = parser.parse_args()

    rows = []
    for spec in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(TeacherConfig, None, [
                f"out_dir={tmp}", f"data.path={args.data}", f"data.subset={args.images}", "optim.epochs=2",
                "stop_after_epochs=1", f"optim.batch_size={args.batch_size}", f"projector={args.projector}",
                "optim.warmup_epochs=1", *model_overrides(spec), *args.overrides])
            train_teacher(cfg, show_progress=False)
            history = json.loads((Path(tmp) / "metrics.jsonl").read_text().splitlines()[-1])
        rows.append({"model": spec, "images_per_s": round(history["images_per_s"], 1)})
        print(f"{spec:24s} {history['images_per_s']:8.1f} images/s")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"date": datetime.date.today().isoformat(), "commit": commit, "threads": torch.get_num_threads(),
              "device": "cuda" if torch.cuda.is_available() else "cpu", "batch_size": args.batch_size,
              "projector": args.projector, "images": args.images, "overrides": args.overrides, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
