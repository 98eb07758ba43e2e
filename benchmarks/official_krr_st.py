"""ssdd's KRR-ST outer step against the official KRR-ST code (github db-Lee/selfsup_dd), same settings, on the CPU
(one thread) or on a GPU (--device cuda).

    git --git-dir=<mirror of db-Lee/selfsup_dd> archive HEAD | tar -x -C /tmp/selfsup_dd   # (mkdir first)
    pip install --target /tmp/kornia_site --no-deps kornia kornia_rs   # optional: the official augmentation
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/kornia_site python benchmarks/official_krr_st.py --official /tmp/selfsup_dd \\
        [--steps-per-block 30] [--repeats 6] [--warm-steps 0]

Settings: the `distill_cpu` preset (budget 100 -> m = 96 images of 32 px with the CPU teacher's d = 128, real
batch 256, a pool of 10 ConvNets of widths 32-64-128 with BatchNorm trained by SGD lr 0.1 momentum 0.9 weight
decay 1e-3 and reset after 100 steps, AdamW lr 1e-3 on images and targets), CIFAR-100 from data/cifar100.npz
loaded with ssdd's loaders, and the committed CPU teacher, which both sides run on their real batch. The
official side is the code of the checkout given by --official, imported from it (nothing of it is copied here):
`algorithms/distill.py:run` for the step, `model_pool.py:ModelPool` for the pool (model `convnet_32_64_128_bn`,
`args.online_iteration` = 100), its `InfIterator` over a shuffled DataLoader of the float train images (batch
256), AdamW on (x_syn, y_syn) with its LinearLR schedule, and its augmentation `data/augmentation.py:get_aug`
(kornia RandomCrop(padding 4) + RandomHorizontalFlip + Normalize); when kornia is not importable, ssdd's
crop_flip followed by normalize stands in for it (the JSON says which). Its `target_model` is ssdd's Teacher
(which normalises its input itself, so on the official side it normalises the already normalised batch once
more: one element-wise op on the batch, nothing else changes). Nothing is monkeypatched: the official step runs
on `torch.device("cpu")` as passed (its `torch.cuda.empty_cache()` calls are no-ops without CUDA). Both sides
start from the same m real images (ssdd's initial pick) with the teacher's targets.

Timing. ssdd's step is its real code: `ssdd.distill.krr_st.distill_krr_st` on a DistillContext built as `ssdd
distill` builds it, i.e. the unmodified `outer_loop`, with log_every = S; its steps/s is the rate outer_loop
itself logs for each window of S steps (perf_counter from the end of the previous window's logging to the end
of the window's last step), which covers everything in the loop body: lr schedule, pool choice, real batch
draw, augmentation, teacher forward, pool features, KRR loss, backward, AdamW, the pool member's SGD step and
the metrics bookkeeping; not the set-up nor the pool warm start, which precede the first window, nor the
checkpoint, which is written once after the last window (checkpoint_every is set beyond the run). The official
blocks run inside outer_loop's logging call (the scalar log of the context is this script's), i.e. after a
window's rate is taken and before the next window starts, so they never fall inside ssdd's timing; an official
block is timed by perf_counter around S iterations of its training loop body: `distill.run(...)` (batch from
the DataLoader, augmentation, teacher forward, KRR loss, gradients, AdamW, pool update), the loss meter update
and the LinearLR step; not its pool init (`ModelPool.init`, the warm start), done before the first block.
Blocks alternate: ssdd S steps, official S steps, repeated R times; each pair gives the ratio
ssdd_steps_per_s / official_steps_per_s, where ssdd's rate is the wall time of its window (from the end of the
previous official block to the window's logging call, the device drained) when there is a previous block,
else its logged rate (class Alternate). --warm-steps K runs ceil(K / S) * S untimed steps of each side first
(alternating the same way), e.g. to measure the official pool once all its slots have reached max_steps: its
counter never restarts, so such a slot is re-initialised at every later use and never trained again, which
makes its steps cheaper (with 10 slots and max_steps 100, after roughly 1,000 steps). Two configurations:
ssdd pool.reset_counter=true (its default) and false (the official pool's counting); each has its own ssdd run
and its own fresh official set-up.

On a GPU (`--device cuda --preset distill_krr_st_cifar100 --teacher <the GPU teacher>`, as
benchmarks/gpu/speed.py runs it): both sides run on the GPU; the official loader keeps its float images on the
host with pinned memory and moves each batch, as upstream; each official block synchronises the GPU before and
after it, so its time is its own; ssdd's rate is its logged one. --overrides K=V ... applies to the preset (for
example ssdd's fast-path settings, which the official side does not read, or smaller settings for a check).

Output: a table on stdout and JSON at --out with the commit and the files under src/ with uncommitted changes
(both taken at the start, when ssdd is imported), date, torch version, threads, settings and every block's
steps/s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssdd.augment import crop_flip, normalize, to_float
from ssdd.config import load_config
from ssdd.data import load_split
from ssdd.distill.budget import samples_for_budget
from ssdd.distill.config import DistillConfig
from ssdd.distill.registry import DistillContext, get_method
from ssdd.run.runtime import seed_everything
from ssdd.run.tblog import ScalarLog
from ssdd.teacher import load_teacher

PRESET = "distill_cpu"  # the default --preset


def official_modules(root: Path) -> dict[str, Any]:
    """Import the official step, pool, model builder and helpers from the checkout at `root`."""
    if not (root / "algorithms" / "distill.py").is_file() or not (root / "model_pool.py").is_file():
        raise SystemExit(f"--official {root}: no algorithms/distill.py or model_pool.py (export the selfsup_dd repo)")
    sys.path.insert(0, str(root))
    names = {"distill": "algorithms.distill", "model_pool": "model_pool", "wrapper": "models.wrapper",
             "utils": "utils"}
    modules = {key: importlib.import_module(name) for key, name in names.items()}
    try:
        modules["augmentation"] = importlib.import_module("data.augmentation")
    except ImportError:  # kornia is missing
        modules["augmentation"] = None
    for module in modules.values():
        if module is not None and not str(Path(module.__file__).resolve()).startswith(str(root.resolve())):
            raise SystemExit(f"{module.__name__} was imported from {module.__file__}, not from {root}")
    return modules


def distill_config(args: argparse.Namespace, reset_counter: bool, total_steps: int, out_dir: str) -> DistillConfig:
    preset = load_config(DistillConfig, args.preset, args.overrides)
    return load_config(DistillConfig, args.preset, [
        *args.overrides, f"out_dir={out_dir}", f"teacher={args.teacher}", f"data.path={args.data}",
        f"device={args.device}",
        f"outer.steps={max(preset.outer.steps, total_steps)}", f"stop_after_steps={total_steps}",
        f"log_every={args.steps_per_block}", f"checkpoint_every={10 * total_steps}",
        f"pool.reset_counter={str(reset_counter).lower()}", f"outer.channels_last={args.channels_last}"])


class Official:
    """The official training loop's state and its body, at the ssdd run's settings."""

    def __init__(self, mods: dict[str, Any], cfg: DistillConfig, teacher: torch.nn.Module, images01: torch.Tensor,
                 labels: torch.Tensor, x_init: torch.Tensor, device: torch.device) -> None:
        self.mods, self.device, self.teacher = mods, device, teacher
        self.args = Namespace(num_models=cfg.pool.size, online_iteration=cfg.pool.max_steps, online_opt="sgd",
                              online_lr=cfg.pool.lr, online_wd=cfg.pool.weight_decay,
                              train_model=f"convnet_{'_'.join(str(w) for w in self.widths(cfg))}_bn",
                              img_shape=tuple(images01.shape[1:]), num_pretrain_classes=teacher.feature_dim,
                              outer_grad_norm=0.0)
        if cfg.pool.momentum != 0.9:
            raise SystemExit("the official pool's SGD momentum is fixed at 0.9")
        seed = cfg.seed
        np.random.seed(seed)
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images01, labels),
                                             batch_size=cfg.outer.batch_size, num_workers=0, shuffle=True,
                                             pin_memory=device.type == "cuda")  # as upstream
        self.iter_tr = mods["utils"].InfIterator(loader)
        if mods["augmentation"] is not None:
            self.aug, _ = mods["augmentation"].get_aug("cifar100", images01.shape[-1], True)
            self.aug_name = "official get_aug (kornia RandomCrop pad 4, RandomHorizontalFlip, Normalize)"
        else:
            mean, std, gen = teacher.mean, teacher.std, torch.Generator(device=device).manual_seed(seed + 1)
            self.aug = lambda x: normalize(crop_flip(x, 4, gen), mean, std)
            self.aug_name = "ssdd crop_flip(padding 4) + normalize (kornia not importable)"
        with torch.no_grad():
            y_init = teacher(x_init).float()
        self.x_syn = x_init.clone().to(device).requires_grad_(True)
        self.y_syn = y_init.clone().to(device).requires_grad_(True)
        self.outer_opt = torch.optim.AdamW([self.x_syn, self.y_syn], lr=cfg.outer.lr, weight_decay=0.0)
        self.outer_sch = torch.optim.lr_scheduler.LinearLR(self.outer_opt, start_factor=1.0, end_factor=1e-3,
                                                           total_iters=cfg.outer.steps)
        self.pool = mods["model_pool"].ModelPool(self.args, device)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            self.pool.init(self.x_syn.detach(), self.y_syn.detach())  # the warm start (prints a bar per model)
        self.meter = mods["utils"].Accumulator()

    @staticmethod
    def widths(cfg: DistillConfig) -> list[int]:
        model = cfg.outer.model
        if model.name != "convnet" or model.feature not in ("flatten", "default"):
            raise SystemExit(f"the official pool has KRR-ST's flattened ConvNet, not {model.name}/{model.feature}")
        return [(model.width or 128) * 2**block for block in range(model.depth or 3)]

    def steps(self, count: int) -> float:
        """Run `count` iterations of the official loop body; return steps/s (the GPU's queue drained at both
        ends, so that the block's time is its own)."""
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(count):
            loss = self.mods["distill"].run(self.args, self.device, self.teacher, self.pool, self.outer_opt,
                                            self.iter_tr, self.aug, self.x_syn, self.y_syn)
            self.meter.update_state(loss)
            self.outer_sch.step()
        synchronize(self.device)
        return count / (time.perf_counter() - start)

    def saturated_slots(self) -> int:
        return sum(count >= self.args.online_iteration for count in self.pool.iterations)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Alternate(ScalarLog):
    """outer_loop's scalar log: at the end of each window of S ssdd steps, records ssdd's rate and runs one
    official block of S steps (untimed while warming up).

    ssdd's rate of a window is taken two ways: the one its loop logged, and the wall time from the end of the
    previous official block to this call, after draining the GPU's queue (`ssdd_steps_per_s_wall`; not for
    the first window, which has no previous block). The wall rate is the one compared: a loop that queues
    GPU work ahead and reads its timer before the queue drains would flatter its logged rate, and its queued
    work would fall into the official block's time. Where the wall rate exists the two agree on the CPU."""

    def __init__(self, official: Official, block: int, warm_blocks: int, progress: bool,
                 on_pair: Callable[[Alternate], None] | None = None) -> None:
        super().__init__(False)
        self.official, self.block, self.warm_blocks, self.progress = official, block, warm_blocks, progress
        self.on_pair = on_pair  # called after every timed pair (the partial JSON of a run that may be stopped)
        self.windows = 0
        self.pairs: list[dict[str, float]] = []
        self.block_end: float | None = None  # perf_counter at the end of the last official block

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        self.windows += 1
        synchronize(self.official.device)
        window_end = time.perf_counter()
        logged = float(values["steps_per_s"])
        wall = self.block / (window_end - self.block_end) if self.block_end is not None else None
        ssdd_rate = wall if wall is not None else logged
        official_rate = self.official.steps(self.block)
        self.block_end = time.perf_counter()
        if self.windows <= self.warm_blocks:
            if self.progress:
                print(f"  warm block {self.windows}/{self.warm_blocks}: ssdd {ssdd_rate:.3f}, official "
                      f"{official_rate:.3f} steps/s", flush=True)
            return
        pair = {"ssdd_steps_per_s": ssdd_rate, "ssdd_steps_per_s_logged": logged, "ssdd_steps_per_s_wall": wall,
                "official_steps_per_s": official_rate, "ratio": ssdd_rate / official_rate,
                "ssdd_pool_resets": int(values["pool_resets"]),
                "official_saturated_slots": self.official.saturated_slots()}
        self.pairs.append(pair)
        if self.on_pair is not None:
            self.on_pair(self)
        if self.progress:
            print(f"  pair {len(self.pairs)}: ssdd {ssdd_rate:.3f}, official {official_rate:.3f} steps/s, ratio "
                  f"{pair['ratio']:.3f} (official slots saturated: {pair['official_saturated_slots']})", flush=True)


def run_configuration(args: argparse.Namespace, mods: dict[str, Any], reset_counter: bool,
                      on_pair: Callable[[Alternate], None] | None = None) -> dict[str, Any]:
    block = args.steps_per_block
    warm_blocks = math.ceil(args.warm_steps / block)
    total = (warm_blocks + args.repeats) * block
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = distill_config(args, reset_counter, total, tmp)
        seed_everything(cfg.seed)
        teacher = load_teacher(cfg.teacher, device)
        source = load_split(cfg.data, cfg.data.train_split, seed=cfg.seed)
        if source.resolution != teacher.resolution:
            raise SystemExit(f"source images are {source.resolution} px, the teacher expects {teacher.resolution}")
        images_u8 = source.images
        m = samples_for_budget(cfg.budget, tuple(images_u8.shape[1:]), teacher.feature_dim, cfg.count_targets,
                               available=images_u8.shape[0])
        # ssdd's initial pick (distill_krr_st draws it the same way from the same seed)
        init = torch.randperm(images_u8.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[:m].sort().values
        # the official side gets its own teacher: ssdd's loop may convert its own to channels-last
        official = Official(mods, cfg, load_teacher(cfg.teacher, device), to_float(images_u8), source.labels,
                            to_float(images_u8[init]).to(device), device)
        hook = Alternate(official, block, warm_blocks, args.progress, on_pair)
        ctx = DistillContext(cfg, device, teacher, source.to(device), Path(tmp), resume=False, show_progress=False,
                             log=hook)
        seed_everything(cfg.seed)
        result = get_method("krr_st").distill(ctx)
    return {"pool.reset_counter": reset_counter, "m": int(result.info["m"]), "warm_steps_run": warm_blocks * block,
            "official_aug": official.aug_name, "ssdd_pool_resets": int(result.info["pool_resets"]),
            **pair_summary(hook.pairs)}


def pair_summary(pairs: list[dict[str, float]]) -> dict[str, Any]:
    """The pairs and the min / median / max of their ratios and of each side's rate."""
    return {"pairs": pairs, "ratio": summary([p["ratio"] for p in pairs]),
            "ssdd_steps_per_s": summary([p["ssdd_steps_per_s"] for p in pairs]),
            "official_steps_per_s": summary([p["official_steps_per_s"] for p in pairs])}


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def git(*command: str) -> str:
    return subprocess.run(["git", *command], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, type=Path, help="a checkout of github db-Lee/selfsup_dd")
    parser.add_argument("--official-commit", default=None,
                        help="the commit the checkout was exported from (recorded in the JSON; an archive has no .git)")
    parser.add_argument("--teacher", default="artifacts/teachers/cifar100_convnet32_cpu")
    parser.add_argument("--data", default="data/cifar100.npz")
    parser.add_argument("--steps-per-block", type=int, default=30, help="S: outer steps per timed block")
    parser.add_argument("--repeats", type=int, default=6, help="R: (ssdd block, official block) pairs")
    parser.add_argument("--warm-steps", type=int, default=0,
                        help="K: untimed steps of each side first (rounded up to a multiple of S)")
    parser.add_argument("--configs", nargs="+", choices=["reset", "no-reset"], default=["reset", "no-reset"],
                        help="ssdd pool.reset_counter=true (reset) and/or false (no-reset)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    parser.add_argument("--preset", default=PRESET, help="the ssdd distill preset both sides run (KRR-ST)")
    parser.add_argument("--overrides", nargs="*", default=[],
                        help="K=V overrides of the preset (ssdd's fast paths, or smaller settings for a check)")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                        help="ssdd's outer.channels_last (the official side always runs its default layout)")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no line per block")
    parser.add_argument("--out", default="benchmarks/results/official_krr_st.json")
    args = parser.parse_args()
    if args.steps_per_block < 1 or args.repeats < 1 or args.warm_steps < 0:
        parser.error("--steps-per-block and --repeats must be >= 1, --warm-steps >= 0")
    torch.set_num_threads(args.threads)
    mods = official_modules(args.official)
    # the code as imported: the commit and the files under src/ that differ from it, taken before the runs
    commit = git("rev-parse", "--short", "HEAD")
    status = subprocess.run(["git", "status", "--porcelain", "--", "src", "benchmarks/official_krr_st.py"],
                            capture_output=True, text=True).stdout
    dirty = [line[3:] for line in status.splitlines()]  # "XY path": not stripped, X may be a space
    started = time.perf_counter()
    results: list[dict[str, Any]] = []

    def write(configurations: list[dict[str, Any]], partial: bool) -> None:
        payload = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit,
            "uncommitted_changes": dirty, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
            "official": {"path": str(args.official), "commit": args.official_commit},
            "settings": {"preset": args.preset, "overrides": args.overrides, "device": args.device,
                         "teacher": args.teacher, "data": args.data,
                         "steps_per_block": args.steps_per_block, "repeats": args.repeats,
                         "warm_steps": args.warm_steps, "ssdd_krr_channels_last": args.channels_last},
            "partial": partial, "wall_s": time.perf_counter() - started, "configurations": configurations}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")

    for name in args.configs:
        print(f"ssdd pool.reset_counter={name == 'reset'}: {args.repeats} pairs of {args.steps_per_block} steps "
              f"after {math.ceil(args.warm_steps / args.steps_per_block) * args.steps_per_block} warm steps",
              flush=True)

        def so_far(hook: Alternate, name: str = name) -> None:  # a stopped run still leaves its pairs
            write([*results, {"pool.reset_counter": name == "reset", "official_aug": hook.official.aug_name,
                              **pair_summary(hook.pairs)}], partial=True)

        results.append(run_configuration(args, mods, name == "reset", so_far))
    print(f"\nssdd {args.preset} settings, m = {results[0]['m']}, one thread each ({torch.get_num_threads()} torch "
          f"threads); official augmentation: {results[0]['official_aug']}")
    print("| ssdd pool.reset_counter | ratio min | median | max | ssdd steps/s (median) | "
          "official steps/s (median) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {str(r['pool.reset_counter']).lower()} | {r['ratio']['min']:.3f} | {r['ratio']['median']:.3f} | "
              f"{r['ratio']['max']:.3f} | {r['ssdd_steps_per_s']['median']:.3f} | "
              f"{r['official_steps_per_s']['median']:.3f} |")
    write(results, partial=False)
    print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
