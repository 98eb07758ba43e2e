"""Re-measure a teacher artifact's linear probe, next to the same architecture at random initialisation.

    python benchmarks/teacher_probe.py artifacts/teachers/cifar100_convnet32_cpu [--iterations 5000]

The random-init row is the control: a teacher is only useful if its probe is well above it. Prints a
Markdown table and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import time
from pathlib import Path

import torch

from ssdd.config import DataConfig, ModelConfig
from ssdd.data import load_split
from ssdd.evaluation import ProbeConfig, probe_encoder
from ssdd.models import build_model
from ssdd.run.runtime import seed_everything
from ssdd.teacher import load_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher")
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/teacher_probe.json")
    args = parser.parse_args()

    teacher = load_teacher(args.teacher)
    manifest = teacher.manifest
    data_cfg = DataConfig(**{**manifest["config"]["data"], "subset": 0})
    train, test = load_split(data_cfg, data_cfg.train_split), load_split(data_cfg, data_cfg.test_split)
    probe_cfg = ProbeConfig(iterations=args.iterations)
    seed_everything(args.seed)
    random_init = build_model(ModelConfig(**manifest["model"]), int(manifest["resolution"]))
    rows = []
    for name, encoder in (("teacher", teacher.backbone), ("random init (same architecture)", random_init)):
        start = time.perf_counter()
        result = probe_encoder(encoder, teacher.mean, teacher.std, train.images, train.labels, test.images,
                               test.labels, train.num_classes, probe_cfg, seed=args.seed)
        rows.append({"encoder": name, **result, "seconds": time.perf_counter() - start})
    print(f"| encoder | {test.name} {test.split} top-1 (%) | train top-1 (%) |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['encoder']} | {row['test_top1']:.2f} | {row['train_top1']:.2f} |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "teacher": args.teacher, "date": datetime.date.today().isoformat(), "commit": commit,
        "threads": torch.get_num_threads(), "iterations": args.iterations, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
