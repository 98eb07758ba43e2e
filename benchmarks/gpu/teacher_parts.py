"""Time per part of one teacher step (augment, forward, backward, optimizer), by CUDA events.

    python benchmarks/gpu/teacher_parts.py --data FILE.npz [--steps 60] [--warmup 20] [--compile]
        [--target-images-per-s 40000] [--out parts.json] [K=V ...]

The step is the one `ssdd teacher -c teacher_cifar100` takes, rebuilt from the package's public pieces (the
K=V overrides apply to that preset): index a batch of the uint8 images on the device, two augmented views
(ssdd.augment.two_views) normalised and in channels-last; the forward of ssdd.teacher.train.BarlowTwinsModel
under bf16 autocast with the Barlow Twins loss and the monitor's cross-entropy; backward; LARS step. Each part
is bracketed by CUDA events (perf_counter after a synchronize on the CPU), so the parts add up to the step;
the median over `steps` steps after `warmup` is reported. With --compile the model is wrapped in
torch.compile first (its compilation falls in the warm-up). The JSON says, against the target rate, how long
a step may take, how long it takes, and which part holds it back by how much.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ssdd.augment import normalize, to_float, two_views
from ssdd.config import load_config
from ssdd.data import channel_stats, load_split
from ssdd.models import build_model
from ssdd.teacher.barlow_twins import barlow_twins_loss
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.lars import LARS
from ssdd.teacher.train import BarlowTwinsModel

PARTS = ("augment", "forward", "backward", "optimizer")


class Clock:
    """Marks between the parts of a step: CUDA events on a GPU, perf_counter (after a sync) elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            import time

            self.marks.append(time.perf_counter())

    def durations_ms(self) -> list[float]:
        """Milliseconds between consecutive marks (synchronises once, at the end)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [1000 * (b - a) for a, b in zip(self.marks, self.marks[1:], strict=False)]


def build_step(cfg: TeacherConfig, device: torch.device, compile_model: bool
               ) -> tuple[Callable[[Clock, torch.Tensor], None], int]:
    """A closure running one step with a mark after each part, and the number of training images."""
    train_set = load_split(cfg.data, cfg.data.train_split, seed=cfg.seed)
    mean_list, std_list = channel_stats(train_set.images)
    mean, std = torch.tensor(mean_list, device=device), torch.tensor(std_list, device=device)
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    model = BarlowTwinsModel(build_model(cfg.model, cfg.data.resolution), cfg.projector, train_set.num_classes)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = LARS([
        {"params": list(model.backbone.parameters()) + list(model.projector.parameters()), "base_lr": cfg.optim.lr},
        {"params": model.monitor.parameters(), "base_lr": cfg.optim.monitor_lr, "lars": False, "weight_decay": 0.0},
    ], lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay, eta=cfg.optim.lars_eta,
       clip_lr=cfg.optim.lars_clip_lr)
    forward = torch.compile(model) if compile_model else model
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    amp = device.type == "cuda"

    def step(clock: Clock, idx: torch.Tensor) -> None:
        clock.mark()
        view1, view2 = two_views(to_float(images[idx]), cfg.augment, generator)
        view1 = normalize(view1, mean, std).contiguous(memory_format=torch.channels_last)
        view2 = normalize(view2, mean, std).contiguous(memory_format=torch.channels_last)
        clock.mark()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            z1, z2, logits = forward(view1, view2)
        loss = barlow_twins_loss(z1, z2, cfg.loss.lambda_offdiag, cfg.loss.scale) + F.cross_entropy(
            logits.float(), labels[idx])
        clock.mark()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clock.mark()
        optimizer.step()
        clock.mark()

    return step, images.shape[0]


def profile(cfg: TeacherConfig, device: torch.device, steps: int, warmup: int, compile_model: bool,
            target: float) -> dict[str, Any]:
    step, n_images = build_step(cfg, device, compile_model)
    batch = cfg.optim.batch_size
    order = torch.randperm(n_images, generator=torch.Generator().manual_seed(0)).to(device)
    per_part: dict[str, list[float]] = {part: [] for part in PARTS}
    for i in range(warmup + steps):
        start = (i * batch) % max(1, n_images - batch + 1)
        clock = Clock(device)
        step(clock, order[start : start + batch])
        if i >= warmup:
            for part, ms in zip(PARTS, clock.durations_ms(), strict=True):
                per_part[part].append(ms)
    median = {part: statistics.median(values) for part, values in per_part.items()}
    step_ms = sum(median.values())
    budget_ms = 1000 * batch / target
    worst = max(median, key=median.get)
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "timer": "CUDA events" if device.type == "cuda" else "perf_counter",
            "batch": batch, "steps": steps, "warmup": warmup, "compile": compile_model,
            "median_ms": median, "step_ms": step_ms, "images_per_s": 1000 * batch / step_ms,
            "target_images_per_s": target, "target_step_ms": budget_ms,
            "share": {part: ms / step_ms for part, ms in median.items()},
            "largest_part": worst, "over_target_ms": max(0.0, step_ms - budget_ms),
            "verdict": (f"reaches {target:.0f} images/s" if step_ms <= budget_ms else
                        f"{step_ms:.2f} ms per step against {budget_ms:.2f} ms for {target:.0f} images/s: "
                        f"{worst} takes {median[worst]:.2f} ms ({100 * median[worst] / step_ms:.0f} %)")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--target-images-per-s", type=float, default=40_000)
    parser.add_argument("--out", default=None)
    parser.add_argument("overrides", nargs="*", help="K=V overrides of preset teacher_cifar100")
    args = parser.parse_args(argv)
    cfg = load_config(TeacherConfig, "teacher_cifar100", [f"data.path={args.data}", *args.overrides])
    result = profile(cfg, torch.device(args.device), args.steps, args.warmup, args.compile,
                     args.target_images_per_s)
    result["overrides"] = args.overrides
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
