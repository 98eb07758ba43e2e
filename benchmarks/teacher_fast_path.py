"""The teacher's fast path against its plain path, part by part, side by side in one process.

Times the step's parts (`ssdd.teacher.step`: the two views, forward + loss, backward + LARS step) with
`fast` off and on, alternately, and prints the median of each, the ratio plain / fast and (without
`--compile`) the ATen operators each part dispatches, about one kernel launch each on a GPU. On CUDA the
timings synchronise around each part; on the CPU there is nothing to synchronise, so the fast path can only
cost its extra operators (the branch-free colour jitter selects its adjustments on the device).

    python benchmarks/teacher_fast_path.py --model convnet:32:3:pool --repeats 20
    python benchmarks/teacher_fast_path.py --device cuda --model resnet18:64 --compile on
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ssdd.config import ModelConfig
from ssdd.models import build_model
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.lars import LARS
from ssdd.teacher.step import model_forward, optimizer_step, views_maker
from ssdd.teacher.train import BarlowTwinsModel, forward_loss


def build(spec: str, projector: list[int], device: torch.device, fast: bool) -> tuple[BarlowTwinsModel, LARS]:
    name, *rest = spec.split(":")
    model_cfg = ModelConfig(name=name, **dict(zip(("width", "depth", "feature"),
                                                  [int(rest[0]), int(rest[1]), rest[2]][:len(rest)], strict=False)))
    torch.manual_seed(0)
    model = BarlowTwinsModel(build_model(model_cfg, 32), projector, 100).to(device, memory_format=torch.channels_last)
    optimizer = LARS([{"params": [*model.backbone.parameters(), *model.projector.parameters()]},
                      {"params": model.monitor.parameters(), "lars": False, "weight_decay": 0.0}],
                     lr=0.3, momentum=0.9, weight_decay=1e-4, clip_lr=True, foreach=fast)
    return model, optimizer


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


class OpCount(TorchDispatchMode):
    """Counts the ATen operators dispatched (each a kernel launch on a GPU, views aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


def counted(fn: Callable[[], object], device: torch.device) -> float:
    with OpCount() as count:
        fn()
    return count.ops


def sync_free(fn: Callable[[], object], device: torch.device) -> float:
    """Runs fn with CUDA's synchronisation check set to raise: a part of the fast step that reads the device fails."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return 0.0


class Step(NamedTuple):
    """One path's step parts and state."""

    fast: bool
    views: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    forward: Callable[..., Any]
    optimizer: LARS
    generator: torch.Generator


def time_step(step: Step, inputs: tuple[torch.Tensor, ...], cfg: TeacherConfig, amp: torch.dtype | None,
              device: torch.device, measure: Callable[[Callable[[], object], torch.device], float] = timed
              ) -> dict[str, float]:
    """Seconds (or, with measure=counted, ATen operators) of each part of one training step."""
    images, labels, mean, std = inputs
    out: dict[str, Any] = {}
    parts = {
        "views": lambda: out.update(views=step.views(images, cfg.augment, step.generator, mean, std, True,
                                                     step.fast)),
        "forward_loss": lambda: out.update(losses=forward_loss(step.forward, *out["views"], labels, cfg, amp)),
        "backward_step": lambda: optimizer_step(step.optimizer, out["losses"][0] + out["losses"][1]),
    }
    return {part: measure(fn, device) for part, fn in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="convnet:32:3:pool", help="name:width:depth:feature")
    parser.add_argument("--projector", default="[1024,1024,1024]")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", default="off", help="the fast path's compile setting (auto | on | off)")
    parser.add_argument("--out", default="", help="also write the medians here (JSON)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = TeacherConfig()
    amp = torch.bfloat16 if device.type == "cuda" else None  # the teacher's precision=auto
    inputs = (torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8, device=device),
              torch.randint(0, 100, (args.batch_size,), device=device),
              torch.full((3,), 0.5, device=device), torch.full((3,), 0.25, device=device))
    steps = []
    for fast in (False, True):
        model, optimizer = build(args.model, json.loads(args.projector), device, fast)
        setting = args.compile if fast else "off"
        steps.append(Step(fast, views_maker(setting, device, fast), model_forward(model, setting, device), optimizer,
                          torch.Generator(device=device).manual_seed(0)))
    times: dict[str, list[float]] = {}
    for repeat in range(args.repeats + 1):  # the first round warms up (and compiles)
        for step in steps:
            for part, value in time_step(step, inputs, cfg, amp, device).items():
                if repeat:
                    times.setdefault(f"{part} {'fast' if step.fast else 'plain'}", []).append(value)
    medians = {key: statistics.median(values) for key, values in times.items()}
    if device.type == "cuda":  # the fast step must not wait for the GPU
        time_step(steps[1], inputs, cfg, amp, device, sync_free)
        print("fast step: no host synchronisation (torch.cuda.set_sync_debug_mode('error') raised nothing)")
    ops = {} if args.compile != "off" else {  # dispatch counting and compiled graphs do not mix
        f"{part} {'fast' if step.fast else 'plain'}": value for step in steps
        for part, value in time_step(step, inputs, cfg, amp, device, counted).items()}
    for part in ("views", "forward_loss", "backward_step"):
        plain, fast = medians[f"{part} plain"], medians[f"{part} fast"]
        counts = f"  ATen ops plain {ops[f'{part} plain']:.0f}, fast {ops[f'{part} fast']:.0f}" if ops else ""
        print(f"{part:14s} plain {1000 * plain:8.2f} ms  fast {1000 * fast:8.2f} ms  plain/fast {plain / fast:5.2f}"
              f"{counts}")
    plain, fast = (sum(v for k, v in medians.items() if k.endswith(tag)) for tag in ("plain", "fast"))
    print(f"{'step':14s} plain {1000 * plain:8.2f} ms  fast {1000 * fast:8.2f} ms  plain/fast {plain / fast:5.2f}  "
          f"({args.batch_size / fast:.0f} images/s fast)")
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        result = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "args": vars(args),
                  "threads": torch.get_num_threads(), "median_s": medians, "aten_ops": ops}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
