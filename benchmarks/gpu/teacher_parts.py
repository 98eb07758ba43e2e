"""The teacher's training step by part, plain path and fast path side by side in one process.

    python benchmarks/gpu/teacher_parts.py [--data FILE.npz] [--preset teacher_cifar100] [--steps 60]
        [--warmup 20] [--compile auto|on|off] [--count-ops] [--target-images-per-s 40000] [--out parts.json]
        [K=V ...]

The step is the one `ssdd teacher` takes (src/ssdd/teacher/train.py), built from the package's own pieces
for each of its two paths: plain (fast=off, compile=off) and fast (fast=on, compile as --compile asks, auto =
on on CUDA where torch.compile works). Parts, in the order of train.py's loop:
- augment: a batch of the uint8 images indexed on the device, its two normalised views in the model's memory
  format (ssdd.teacher.step.views_maker; the fast path's colour jitter is branch-free);
- forward: ssdd.teacher.train.forward_loss through step.model_forward (bf16 autocast where precision says so);
- backward and optimizer: step.optimizer_step's two halves (zero_grad and backward; the LARS step, foreach on
  the fast path), split so that each has its own time;
- log: StepLog.record, and its NaN check where train.py makes it (every step on the plain path, a read of the
  device that waits for it; every FAST_SYNC_EVERY steps on the fast path).
The two paths alternate step by step (same data order, same seeds), so a machine's load falls on both alike.
On CUDA each part is bracketed by CUDA events and nothing synchronises between the parts (one synchronize
per step, after its last part, reads the events); on the CPU by perf_counter. The median of each part over
`steps` steps after `warmup` (compilation falls in the warm-up) is reported per path (with its quartiles),
their sum as the step's time, the images/s it gives and, against the target rate, which part holds the step
back by how much; and the ratio plain / fast per part. --count-ops adds the ATen operators each part
dispatches (about one kernel launch each on a GPU; not counted for a compiled path). On CUDA a few more
fast steps run under torch.cuda.set_sync_debug_mode("error"), which raises at any read back to the host:
`sync_check` records the part and the error, if any. The fast path's numbers are at the top level of the
JSON, the plain path's under `plain`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ssdd.config import load_config
from ssdd.data import channel_stats, load_split
from ssdd.models import build_model
from ssdd.run.compiled import Compiled, switch
from ssdd.run.runtime import channels_last as use_channels_last
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.step import FAST_SYNC_EVERY, StepLog, model_forward, views_maker
from ssdd.teacher.train import BarlowTwinsModel, autocast_dtype, build_optimizer, forward_loss

PARTS = ("augment", "forward", "backward", "optimizer", "log")
SYNC_CHECK_STEPS = 3


class Data:
    """The training images, labels and normalisation statistics on the device, as train.py holds them."""

    def __init__(self, cfg: TeacherConfig, device: torch.device) -> None:
        train_set = load_split(cfg.data, cfg.data.train_split, seed=cfg.seed)
        mean, std = channel_stats(train_set.images)
        self.mean, self.std = torch.tensor(mean, device=device), torch.tensor(std, device=device)
        self.images, self.labels = train_set.images.to(device), train_set.labels.to(device)
        self.num_classes = train_set.num_classes


class TeacherStep:
    """One path's model, optimiser, views, forward and log, built as train.py builds them (one process)."""

    def __init__(self, cfg: TeacherConfig, data: Data, device: torch.device, fast: bool, compile_setting: str,
                 log_steps: int) -> None:
        self.cfg, self.data, self.fast = cfg, data, fast
        torch.manual_seed(cfg.seed)  # both paths start from the same weights
        model = BarlowTwinsModel(build_model(cfg.model, cfg.data.resolution), cfg.projector, data.num_classes)
        self.channels_last = use_channels_last(cfg.channels_last)
        self.model = model.to(device, memory_format=torch.channels_last if self.channels_last
                              else torch.preserve_format).train()
        self.optimizer = build_optimizer(cfg, model, cfg.optim.batch_size, fast)
        self.amp_dtype = autocast_dtype(cfg, device)
        self.forward: Compiled = model_forward(self.model, compile_setting, device)
        self.views: Compiled = views_maker(compile_setting, device, fast)
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 1)
        self.log = StepLog(log_steps, device)

    @property
    def compiled(self) -> bool:
        """Whether the model runs through torch.compile (after the first step: a failed compile runs eagerly)."""
        return self.forward.compiled is not None

    def parts(self, idx: torch.Tensor, step: int) -> list[Callable[[], None]]:
        """The step's parts (PARTS, in order) on the batch `idx` as step `step` of the log, sharing their results."""
        cfg, data, out = self.cfg, self.data, {}

        def augment() -> None:
            out["views"] = self.views(data.images[idx], cfg.augment, self.generator, data.mean, data.std,
                                      self.channels_last, self.fast)
            out["labels"] = data.labels[idx]

        def forward() -> None:
            out["losses"] = forward_loss(self.forward, *out["views"], out["labels"], cfg, self.amp_dtype)

        def backward() -> None:  # step.optimizer_step, first half
            self.optimizer.zero_grad(set_to_none=True)
            (out["losses"][0] + out["losses"][1]).backward()

        def optimizer() -> None:  # step.optimizer_step, second half
            self.optimizer.step()

        def log() -> None:
            self.log.record(step, out["losses"][0], out["losses"][2], out["labels"])
            if not self.fast or step % FAST_SYNC_EVERY == 0:  # where train.py checks the loss
                self.log.check(step + 1, 0)

        return [augment, forward, backward, optimizer, log]


class Clock:
    """Marks between the parts of a step: CUDA events on a GPU (no synchronisation), perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def durations_ms(self) -> list[float]:
        """Milliseconds between consecutive marks (on CUDA it synchronises once, to read the events)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [1000 * (b - a) for a, b in zip(self.marks, self.marks[1:], strict=False)]


def timed_step(parts: list[Callable[[], None]], device: torch.device) -> list[float]:
    """Milliseconds of each part of one step."""
    clock = Clock(device)
    clock.mark()
    for part in parts:
        part()
        clock.mark()
    return clock.durations_ms()


class OpCount(TorchDispatchMode):
    """Counts the ATen operators dispatched (each a kernel launch on a GPU, views aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


def counted_step(parts: list[Callable[[], None]]) -> list[int]:
    """ATen operators of each part of one step."""
    counts = []
    for part in parts:
        with OpCount() as count:
            part()
        counts.append(count.ops)
    return counts


def sync_check(path: TeacherStep, batches: list[torch.Tensor]) -> dict[str, Any]:
    """Runs the path's steps with CUDA's synchronisation check set to raise: the first part that reads the
    device, and the error, or none. Log steps 1.. are not multiples of FAST_SYNC_EVERY (no planned read)."""
    running = None  # the part under way
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, idx in enumerate(batches, start=1):
            for running, part in zip(PARTS, path.parts(idx, step), strict=True):  # noqa: B007 (read below)
                part()
    except Exception as exc:  # the error names the synchronising call; the benchmark goes on
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return {"steps": len(batches), "synchronises": True, "part": running, "error": first}
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return {"steps": len(batches), "synchronises": False, "part": None, "error": None}


def summary(times: dict[str, list[float]], batch: int, target: float) -> dict[str, Any]:
    """Median ms per part (and its quartiles: how much the steps vary), the step's ms (the medians' sum),
    images/s and the verdict against the target rate."""
    median = {part: statistics.median(values) for part, values in times.items()}
    quartiles = {part: statistics.quantiles(values, n=4)[::2] if len(values) > 1 else [*values, *values]
                 for part, values in times.items()}
    step_ms = sum(median.values())
    budget_ms = 1000 * batch / target
    worst = max(median, key=median.get)
    return {"median_ms": median, "quartiles_ms": quartiles, "step_ms": step_ms, "images_per_s": 1000 * batch / step_ms,
            "share": {part: ms / step_ms for part, ms in median.items()},
            "largest_part": worst, "over_target_ms": max(0.0, step_ms - budget_ms),
            "verdict": (f"reaches {target:.0f} images/s" if step_ms <= budget_ms else
                        f"{step_ms:.2f} ms per step against {budget_ms:.2f} ms for {target:.0f} images/s: "
                        f"{worst} takes {median[worst]:.2f} ms ({100 * median[worst] / step_ms:.0f} %)")}


def combined(result: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fast path's summary at the top, the plain one's under `plain`, their ratio per part."""
    return {**result["fast"], "plain": result["plain"],
            "plain_over_fast": {part: result["plain"]["median_ms"][part] / result["fast"]["median_ms"][part]
                                for part in PARTS} | {"step": result["plain"]["step_ms"] / result["fast"]["step_ms"]}}


def profile(cfg: TeacherConfig, device: torch.device, steps: int, warmup: int, compile_setting: str,
            target: float, count_ops: bool, save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Both paths' parts, alternately step by step; the fast path's summary at the top, the plain one's under
    `plain`, their ratio per part under `plain_over_fast`. `save` gets the summary so far (`partial`: true)
    every 10 timed steps, so that a run stopped at a deadline still reports the steps it timed."""
    data = Data(cfg, device)
    total = warmup + steps
    log_steps = total + SYNC_CHECK_STEPS + 1  # the timed steps, the counted one, the sync check's
    paths = {"plain": TeacherStep(cfg, data, device, False, "off", log_steps),
             "fast": TeacherStep(cfg, data, device, True, compile_setting, log_steps)}
    batch, n_images = cfg.optim.batch_size, data.images.shape[0]
    order = torch.randperm(n_images, generator=torch.Generator().manual_seed(cfg.seed * 7919)).to(device)
    batches = [order[start: start + batch] for start in
               ((i * batch) % max(1, n_images - batch + 1) for i in range(total + SYNC_CHECK_STEPS))]
    times: dict[str, dict[str, list[float]]] = {name: {part: [] for part in PARTS} for name in paths}
    for i in range(total):
        for name, path in paths.items():
            for part, ms in zip(PARTS, timed_step(path.parts(batches[i], i), device), strict=True):
                if i >= warmup:
                    times[name][part].append(ms)
        if save is not None and i >= warmup and (i - warmup) % 10 == 9 and i + 1 < total:
            save({**combined({name: summary(times[name], batch, target) for name in paths}), "partial": True,
                  "steps_timed": i + 1 - warmup})
    result = {name: summary(times[name], batch, target) for name in paths}
    for name, path in paths.items():
        result[name]["fast"], result[name]["compiled"] = path.fast, path.compiled
        if count_ops:  # dispatch counting does not see inside a compiled graph
            result[name]["aten_ops"] = None if path.compiled else dict(zip(PARTS, counted_step(
                path.parts(batches[total], total)), strict=True))
    out = combined(result)
    out["sync_check"] = (sync_check(paths["fast"], batches[total:]) if device.type == "cuda" else
                         {"steps": 0, "synchronises": None, "part": None, "error": "not run: no CUDA device"})
    return out


def provenance(device: torch.device) -> dict[str, Any]:
    """Where and when the numbers were measured, and how busy the machine was."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"), "commit": commit or None,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "timer": "CUDA events" if device.type == "cuda" else "perf_counter",
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_1min_before": os.getloadavg()[0], "torch": torch.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the training data (default: the preset's data.path)")
    parser.add_argument("--preset", default="teacher_cifar100")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per path first (compilation)")
    parser.add_argument("--compile", default="auto", help="the fast path's compile setting: auto | on | off")
    parser.add_argument("--count-ops", action="store_true", help="also count each part's ATen operators")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--target-images-per-s", type=float, default=40_000)
    parser.add_argument("--out", default=None)
    parser.add_argument("overrides", nargs="*", help="K=V overrides of the preset")
    args = parser.parse_args(argv)
    overrides = [*([f"data.path={args.data}"] if args.data else []), *args.overrides]
    cfg = load_config(TeacherConfig, args.preset, overrides)
    device = torch.device(args.device)
    switch(args.compile, "--compile", device)  # a misspelt setting fails here, before any work
    head = {**provenance(device), "preset": args.preset, "overrides": overrides, "batch": cfg.optim.batch_size,
            "steps": args.steps, "warmup": args.warmup, "compile": args.compile,
            "target_images_per_s": args.target_images_per_s,
            "target_step_ms": 1000 * cfg.optim.batch_size / args.target_images_per_s}

    def write(found: dict[str, Any]) -> str:
        text = json.dumps({**head, **found, "load_1min_after": os.getloadavg()[0]}, indent=2)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n")
        return text

    sys.stdout.write(write(profile(cfg, device, args.steps, args.warmup, args.compile, args.target_images_per_s,
                                   args.count_ops, write)) + "\n")


if __name__ == "__main__":
    main()
