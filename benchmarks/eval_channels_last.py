"""Fine-tuning speed of the evaluation with `channels_last` on and off, per architecture (`--threads`, default 1).

Runs the evaluation's own `finetune` (crop + flip, SGD, cosine lr, batch 128) on random 32 px images for a few
iterations per network, in both memory formats, alternating on/off `--repeats` times so that both see the same
machine load; reports seconds per iteration and the ratio off / on. The last accuracy pass runs on 256 images.

    python benchmarks/eval_channels_last.py --out benchmarks/results/eval_channels_last.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import time
from pathlib import Path

import torch

from ssdd.config import ModelConfig
from ssdd.data.dataset import ImageDataset
from ssdd.evaluation.config import FinetuneConfig
from ssdd.evaluation.finetune import finetune
from ssdd.models import build_model

MODELS = ["convnet:32:3:flatten", "resnet10:16", "resnet18:16", "vgg11:16", "alexnet:16", "mobilenetv2:16",
          "mobilenetv2:8", "vit_small:64:4"]


def model_config(spec: str) -> ModelConfig:
    name, *rest = spec.split(":")
    keys = ["width", "depth", "feature"]
    values = {k: (int(v) if k != "feature" else v) for k, v in zip(keys, rest, strict=False)}
    return ModelConfig(name=name, **values)


def seconds_per_iteration(spec: str, layout: torch.memory_format, iterations: int, data: tuple) -> float:
    train, test, mean, std = data
    torch.manual_seed(0)
    backbone = build_model(model_config(spec), 32).to(memory_format=layout)
    cfg = FinetuneConfig(iterations=iterations, small_iterations=iterations, batch_size=128)
    start = time.perf_counter()
    finetune(backbone, train, test, mean, std, cfg, torch.Generator().manual_seed(0), "cifar10")
    return (time.perf_counter() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, help="name:width[:depth:feature]")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    train = ImageDataset(torch.randint(0, 256, (2048, 3, 32, 32), dtype=torch.uint8, generator=gen),
                         torch.randint(0, 10, (2048,), generator=gen), tuple(map(str, range(10))), "train", "random")
    test = ImageDataset(train.images[:256], train.labels[:256], train.classes, "test", "random")
    data = (train, test, torch.full((3,), 0.5), torch.full((3,), 0.25))
    results = []
    for spec in args.models:
        times: dict[str, list[float]] = {"on": [], "off": []}
        for layout in (torch.contiguous_format, torch.channels_last):  # warm-up, both layouts
            seconds_per_iteration(spec, layout, 2, data)
        for _ in range(args.repeats):
            for name, layout in (("off", torch.contiguous_format), ("on", torch.channels_last)):
                times[name].append(seconds_per_iteration(spec, layout, args.iterations, data))
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        results.append({"model": spec, "s_per_it_off": off, "s_per_it_on": on, "speedup": off / on,
                        "runs": times})
        print(f"{spec:22s} off {off:.3f} s/it  on {on:.3f} s/it  off/on {off / on:.2f}x", flush=True)
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "commit": commit, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "iterations": args.iterations, "repeats": args.repeats,
            "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
