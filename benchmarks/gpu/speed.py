"""Before/after speed of every stage on one GPU: the old code (commit c04162e, copied by speed_prepare.sh) and the
new code run side by side, in the same call, on the same card, on synthetic data of the real shapes.

    python3 benchmarks/gpu/speed.py --out $OUT/speed.json --seconds 320 --parts teacher,distill
    python3 benchmarks/gpu/speed.py --out $OUT/speed_eval.json --seconds 320 --parts evaluate,protocol
    python3 benchmarks/gpu/speed.py --tiny --old src --out /tmp/speed.json       # the whole machinery on a CPU

(benchmarks/gpu/speed_run.sh has the exact device commands and the carry list; speed_table.py renders the
JSON as the before/after table.) Parts, in the order run:
- rate: the bf16 dense matrix rate of this card, measured (an N^3 matmul loop timed by CUDA events, median);
- flops: FLOPs per step of each stage, counted (speed_flops.py, FlopCounterMode on the meta device);
- teacher: `ssdd teacher -c teacher_cifar100` old and new, a warm-up epoch then timed epochs (images/s of the
  last one in metrics.jsonl);
- distill: `ssdd distill` at presets distill_krr_st_cifar100 (KRR-ST) and cifar100 (Boost), old and new,
  steps/s from metrics.jsonl with the first logging window (warm-up) dropped;
- official: the official KRR-ST code (github db-Lee/selfsup_dd) beside the new code on this GPU
  (benchmarks/official_krr_st.py --device cuda);
- mkdt (optional, not in `all`): one expert epoch, then MKDT iterations/s old and new;
- evaluate: one evaluation cell (the committed Boost set, preset evaluate_full on the CIFAR-100 target, short
  iteration counts, recorded) old and new, in seconds, then each --variant evaluate:NAME:OVERRIDES (new code);
- parts: the new code's teacher step, plain and fast path, split into augment / forward / backward / optimizer /
  log (teacher_parts.py);
- protocol: the full evaluate_full protocol (3 committed sets + no-pretrain + tuned full-data rows, 3 seeds,
  CIFAR-10 / CIFAR-100 / Flowers-102), new code only, until its share of the deadline; the JSON says how many
  of the planned (row, seed, target) cells finished.
Every stage is a subprocess (benchmarks/gpu/peak.py: the `ssdd` CLI in-process, peak GPU memory at exit) with
PYTHONPATH pointing at the old or new src; nvidia-smi samples the GPU's utilisation meanwhile. Each part gets
a share of --seconds and stops at its deadline; the JSON is rewritten after every part, so a killed call
still returns what finished. Extra settings for the new code only (fast paths) come from --new-teacher-args,
--new-distill-args and --new-eval-args and are recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OLD_COMMIT = "c04162e"
PARTS = ("rate", "flops", "teacher", "distill", "official", "mkdt", "evaluate", "parts", "protocol")
DEFAULT_PARTS = ("rate", "flops", "teacher", "distill", "official", "evaluate", "parts", "protocol")
# share of --seconds each part may take (of what is left when it starts, scaled by the parts still to run)
WEIGHTS = {"rate": 0.3, "flops": 0.3, "parts": 2.0, "teacher": 2.5, "distill": 4.0, "official": 2.0, "mkdt": 1.5,
           "evaluate": 2.5, "protocol": 4.0}
DISTILL_PRESETS = {"krr_st": "distill_krr_st_cifar100", "boost": "cifar100"}
NEW_TEACHER_FLOOR = 80.0  # seconds the new teacher run gets at least: set-up, compiling, then three short epochs
SETS = ("boost_n100", "krr_st_n100", "random_n100")


# ----------------------------------------------------------------------------- settings of the two scales
def scale_settings(tiny: bool) -> dict[str, Any]:
    """Sizes and per-stage overrides: the GPU recipe (presets as they are, short runs) or a tiny CPU check."""
    if not tiny:
        return {"train": 50_000, "test": 10_000, "flowers": (1020, 1020, 6149), "device_args": [],
                "teacher": ["data.subset=25600", "optim.epochs=4", "stop_after_epochs=3"], "distill_steps": 300,
                "log_every": 50,
                "distill": {"krr_st": [], "boost": []}, "mkdt_iterations": 60, "mkdt_log_every": 10,
                # the new code's KRR-ST runs with its teacher cache (auto declines it for a 300-step run, which
                # it would not repay) over a 2,000-image subset, so that the build (n x 162 teacher forwards)
                # fits the call; a step's cost does not depend on the source's size (random batch indices)
                "cache": {"krr_st": ["outer.teacher_cache=on", "data.subset=2000"], "boost": []},
                "experts": [], "mkdt": [],
                "evaluate_cell": ["pretrain.max_iterations=1000", "finetune.iterations=2000", "probe.iterations=2000"],
                "protocol": [], "official": ["--steps-per-block", "40", "--repeats", "3", "--warm-steps", "40"],
                "parts_steps": ["--steps", "60", "--warmup", "20"], "matmul_n": 8192, "flops": {}}
    model = ["model.name=convnet", "model.width=8", "model.depth=2", "projector=[32,32]", "optim.batch_size=64"]
    small_pool = ["outer.batch_size=32", "outer.model.width=8", "outer.model.depth=2", "pool.size=2",
                  "pool.max_steps=4"]
    boost = ["budget=12", "boost.image_bases=0", "boost.target_bases=8",
             "boost.augmentations=[identity,rot90]"]
    cell = ["models=[{name: convnet, width: 8, depth: 2}]", "pretrain.max_iterations=4", "finetune.iterations=4",
            "finetune.small_iterations=4", "probe.iterations=4", "pretrain.batch_size=32", "finetune.batch_size=32"]
    return {"train": 256, "test": 64, "flowers": (204, 204, 204), "device_args": ["device=cpu"],
            "teacher": [*model, "optim.epochs=3", "stop_after_epochs=2", "optim.warmup_epochs=0"],
            "distill_steps": 6, "log_every": 2,
            "distill": {"krr_st": ["budget=6", *small_pool], "boost": [*boost, *small_pool]},
            "cache": {"krr_st": ["outer.teacher_cache=on", "data.subset=128"], "boost": []},
            "mkdt_iterations": 4, "mkdt_log_every": 1, "experts": ["model.width=8", "batch_size=32"],
            "mkdt": ["budget=6", "mkdt.syn_steps=2", "mkdt.batch_syn=8"], "evaluate_cell": cell,
            "protocol": [*cell, "seeds=1", "full_data.epochs=1", "full_data.batch_size=32"],
            "official": ["--steps-per-block", "2", "--repeats", "1", "--warm-steps", "2", "--overrides", *small_pool],
            "parts_steps": ["--steps", "2", "--warmup", "1", *model], "matmul_n": 256,
            "flops": {"teacher": model, "krr": ["budget=6", *small_pool], "boost": [*boost, *small_pool],
                      "eval": cell[:1]}}


# The new code's extra settings, checked against its own schemas and its settings' checks (values, not paths)
# before any device time is spent: a misspelt or renamed setting, or a value out of its range, would otherwise fail
# every new-code run of the call. Runs under the new src (argv[1]: JSON).
CHECK_ARGS = """
import json, shlex, sys
from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.distill.validate import check_distill_settings
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.validate import check_evaluate_settings
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.validate import check_teacher_settings
spec = json.loads(sys.argv[1])
presets = {"krr_st": "distill_krr_st_cifar100", "boost": "cifar100"}
checks = [(TeacherConfig, "teacher_cifar100", spec["teacher"], check_teacher_settings),
          (EvaluateConfig, "evaluate_full", spec["evaluate"], check_evaluate_settings)]
checks += [(DistillConfig, preset, spec["distill"] + spec[method], check_distill_settings)
           for method, preset in presets.items()]
for variant in spec["variants"]:
    owner, _, overrides = variant.split(":", 2)
    checks.append((EvaluateConfig, "evaluate_full", shlex.split(overrides), check_evaluate_settings)
                  if owner == "evaluate" else
                  (DistillConfig, presets[owner], shlex.split(overrides), check_distill_settings))
for schema, preset, overrides, check in checks:
    check(load_config(schema, preset, overrides))
"""


# ----------------------------------------------------------------------------- synthetic data
def synthetic_split(rng: np.random.Generator, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 32x32 RGB images with labels cycling over the classes (every class present)."""
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n, dtype=np.int64) % classes


def write_npz(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: int) -> Path:
    """ssdd's NumPy format (ssdd.data.save_npz): x_<split> uint8 (N,H,W,3), y_<split> int64, classes."""
    arrays: dict[str, np.ndarray] = {"classes": np.asarray([str(c) for c in range(classes)])}
    for split, (x, y) in splits.items():
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    np.savez(path, **arrays)
    return path


def make_data(folder: Path, scale: dict[str, Any]) -> dict[str, Path]:
    """CIFAR-10, CIFAR-100 and Flowers-102-at-32 shaped random data (speed does not depend on pixel values)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train, test = scale["train"], scale["test"]
    paths = {name: write_npz(folder / f"{name}.npz", {"train": synthetic_split(rng, train, k),
                                                     "test": synthetic_split(rng, test, k)}, k)
             for name, k in (("cifar10", 10), ("cifar100", 100))}
    f_train, f_val, f_test = scale["flowers"]
    paths["flowers102"] = write_npz(folder / "flowers102_32.npz", {
        "train": synthetic_split(rng, f_train, 102), "val": synthetic_split(rng, f_val, 102),
        "test": synthetic_split(rng, f_test, 102)}, 102)
    return paths


# ----------------------------------------------------------------------------- measuring helpers
class GpuSampler:
    """nvidia-smi's utilisation and memory in use, every 500 ms, in the background (None where it is missing)."""

    QUERY = ("nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500")

    def __init__(self, path: Path) -> None:
        self.path, self.process = path, None
        try:
            self.handle = path.open("w")
            self.process = subprocess.Popen(list(self.QUERY), stdout=self.handle, stderr=subprocess.DEVNULL)
        except (FileNotFoundError, PermissionError, OSError):
            self.process = None

    def stop(self) -> dict[str, Any] | None:
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGINT)  # its loop's documented stop: the samples it holds are written
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.handle.close()
        return parse_utilisation(self.path.read_text())


def parse_utilisation(text: str) -> dict[str, Any] | None:
    """Summary of nvidia-smi lines "util, memory_mib" (first GPU of each sample); None without samples."""
    util, memory = [], []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            util.append(int(fields[0]))
            memory.append(int(fields[1]))
    if not util:
        return None
    return {"samples": len(util), "util_mean": statistics.fmean(util), "util_median": statistics.median(util),
            "util_max": max(util), "memory_used_mib_max": max(memory)}


class Arrivals:
    """When the lines of a run's metrics.jsonl appear, polled every 20 ms while the run goes on.

    A line is written after its window's loss was read (a device sync), so the time between two lines is the
    window's wall time, whatever the loop's own timer includes: the check on a loop that queues GPU work
    ahead and takes its window's time before the queue drains."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.size, self.seen = path, -1, []  # seen: (seconds since start, lines so far)
        self.start = time.perf_counter()

    def poll(self) -> None:
        if self.path is None or not self.path.exists() or self.path.stat().st_size == self.size:
            return
        self.size = self.path.stat().st_size
        lines = self.path.read_text().count("\n")
        if not self.seen or lines > self.seen[-1][1]:
            self.seen.append((time.perf_counter() - self.start, lines))


def run_process(cmd: list[str], env: dict[str, str], timeout: float, log: Path,
                arrivals: Arrivals | None = None) -> tuple[int | None, float]:
    """Run `cmd` until it ends or `timeout` s pass (then SIGTERM, 20 s later SIGKILL); (exit code, seconds).
    With `arrivals`, its file is polled meanwhile."""
    start = time.perf_counter()
    arrivals = arrivals or Arrivals(None)
    with log.open("a") as handle:
        handle.write("$ " + shlex.join(cmd) + "\n")
        handle.flush()
        process = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                   start_new_session=True)
        code: int | None = None
        while code is None and time.perf_counter() - start < max(1.0, timeout):
            try:
                code = process.wait(0.02)
            except subprocess.TimeoutExpired:
                arrivals.poll()
        if code is None:  # stopped at the deadline
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        arrivals.poll()
    return code, time.perf_counter() - start


def arrival_rate(arrivals: Arrivals, rows: list[dict[str, Any]], per_unit: float = 1.0) -> float | None:
    """Units per second between the first and the last line seen (the first window, warm-up, dropped): the
    counter's advance (step, iteration or epoch, times per_unit) over the wall time between their arrivals."""
    seen = [(t, lines) for t, lines in arrivals.seen if 0 < lines <= len(rows)]
    if len(seen) < 2 or seen[-1][0] <= seen[0][0]:
        return None
    counter = next((k for k in ("step", "iteration", "epoch") if k in rows[0]), None)
    if counter is None:
        return None
    advance = rows[seen[-1][1] - 1][counter] - rows[seen[0][1] - 1][counter]
    return advance * per_unit / (seen[-1][0] - seen[0][0])


def tail(path: Path, chars: int = 1500) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def window_rate(rows: list[dict[str, Any]], key: str = "steps_per_s") -> float | None:
    """Mean of the logged rates without the first window (compilation, cuDNN autotuning, allocator warm-up)."""
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    values = values[1:] or values
    return statistics.fmean(values) if values else None


def matmul_rate(n: int, repeats: int = 20) -> dict[str, Any]:
    """bf16 dense matrix rate: n x n x n products on random data, timed one by one by CUDA events, median."""
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    times = []
    for i in range(repeats + 3):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            t = time.perf_counter()
            a @ b
            ms = 1000 * (time.perf_counter() - t)
        if i >= 3:  # warm-up: cuBLAS handle, heuristics, clocks
            times.append(ms)
    median = statistics.median(times)
    return {"n": n, "dtype": "bfloat16", "repeats": repeats, "median_ms": median,
            "tflops": 2 * n**3 / (median / 1000) / 1e12, "timer": "CUDA events" if cuda else "perf_counter",
            "device": torch.cuda.get_device_name(0) if cuda else "cpu"}


def add_ratios(stage: dict[str, Any], higher_is_better: bool) -> None:
    """speed-up of new over old: new/old for a rate, old/new for seconds (null when either is missing)."""
    old, new = stage.get("old", {}).get("value"), stage.get("new", {}).get("value")
    if old and new:
        stage["speedup"] = new / old if higher_is_better else old / new
    else:
        stage["speedup"] = None


def add_tflops(stage: dict[str, Any], flops: float | None, per_value: float, bf16_tflops: float | None) -> None:
    """Achieved TFLOP/s of each side (FLOPs per step x steps/s) and its fraction of the measured bf16 rate."""
    stage["flops_per_step"] = flops
    for side in ("old", "new"):
        entry = stage.get(side)
        if not entry or not flops or not entry.get("value"):
            continue
        entry["tflops"] = flops * entry["value"] / per_value / 1e12
        entry["fraction_of_bf16"] = entry["tflops"] / bf16_tflops if bf16_tflops else None


# ----------------------------------------------------------------------------- the benchmark
class Bench:
    """The call's state: where things are, the deadline, the JSON written after every part."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale = scale_settings(args.tiny)
        self.start = time.monotonic()
        self.deadline = self.start + args.seconds
        self.part_deadline = self.deadline
        self.min_run = 1.0 if args.tiny else 15.0  # a run given less could not even start (imports, CUDA, data)
        if args.work:  # a fresh folder inside it: a rerun on a warm machine must not meet the last run's folders
            Path(args.work).mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="ssdd_speed_", dir=args.work))
        self.log = Path(args.out).with_suffix(".log")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        self.src = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
        self.result: dict[str, Any] = {
            "kind": "ssdd.speed", "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]), "tiny": args.tiny,
            "data": "synthetic, CIFAR shapes", "seconds": args.seconds,
            "commit": {"new": git_commit(), "old": OLD_COMMIT},
            "new_args": {"teacher": args.new_teacher_args, "distill": args.new_distill_args,
                         "evaluate": args.new_eval_args,
                         **{method: getattr(args, f"new_{method}_args") for method in DISTILL_PRESETS},
                         "variants": args.variant},
            "teacher_dir": args.teacher, "sets_dir": args.sets, "stages": {}, "parts_done": [],
            "parts_skipped": {}, **environment()}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def share(self, part: str, todo: list[str]) -> float:
        """Seconds part `part` may use: its weight's share of what is left for the parts still to run."""
        total = sum(WEIGHTS[p] for p in todo)
        share = self.left() * WEIGHTS[part] / total
        return max(0.0, min(self.left(), 90.0) if part in ("rate", "flops") else share)  # cheap, but imports

    def part_left(self) -> float:
        """Seconds left to the running part (its share ends at part_deadline), never past the call's deadline."""
        return max(0.0, min(self.part_deadline, self.deadline) - time.monotonic())

    def at_least(self, seconds: float) -> float:
        """The running part's time left, but at least `seconds` when the call has them (a last short step)."""
        return min(self.left(), max(seconds, self.part_left()))

    def env(self, side: str) -> dict[str, str]:
        paths = [str(self.src[side]), *[str(Path(p).resolve()) for p in self.args.site]]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1",
                "TQDM_DISABLE": "1"}

    def save(self) -> None:
        self.result["wall_s"] = time.monotonic() - self.start
        out = Path(self.args.out)
        out.write_text(json.dumps(self.result, indent=2) + "\n")

    def ssdd(self, name: str, side: str, command: list[str], timeout: float,
             watch: Path | None = None) -> dict[str, Any]:
        """One `ssdd` command under peak.py with the GPU sampled; its record (exit code null = deadline)."""
        if timeout < self.min_run:
            return {"exit_code": None, "wall_s": 0.0, "gpu": None, "skipped": f"no time left ({timeout:.0f} s)",
                    "command": command}
        peak = self.work / f"{name}_{side}.peak.json"
        sampler = GpuSampler(self.work / f"{name}_{side}.smi.csv")
        log = self.work / f"{name}_{side}.log"
        cmd = [sys.executable, str(HERE / "peak.py"), str(peak), *command]
        self.arrivals = Arrivals(watch)
        code, wall = run_process(cmd, self.env(side), timeout, log, self.arrivals)
        util = sampler.stop()
        record: dict[str, Any] = {"exit_code": code, "wall_s": wall, "gpu": util, "src": str(self.src[side]),
                                  "command": command}
        if peak.exists():
            memory = json.loads(peak.read_text())
            record["peak_allocated_bytes"] = memory.get("peak_allocated_bytes")
            record["peak_reserved_bytes"] = memory.get("peak_reserved_bytes")
        if code != 0:
            record["log_tail"] = tail(log)
        with self.log.open("a") as handle:
            handle.write(f"\n===== {name} ({side})\n{tail(log, 6000)}\n")
        return record

    def script(self, name: str, argv: list[str], timeout: float, side: str = "new") -> dict[str, Any]:
        """A benchmark script (not the CLI) under the `side` src, GPU sampled; its record and JSON output."""
        out = self.work / f"{name}.json"
        sampler = GpuSampler(self.work / f"{name}.smi.csv")
        log = self.work / f"{name}.log"
        code, wall = run_process([sys.executable, *argv, "--out", str(out)], self.env(side), timeout, log)
        record: dict[str, Any] = {"exit_code": code, "wall_s": wall, "gpu": sampler.stop()}
        if out.exists():
            record["result"] = json.loads(out.read_text())
        if code != 0:
            record["log_tail"] = tail(log)
        with self.log.open("a") as handle:
            handle.write(f"\n===== {name}\n{tail(log, 6000)}\n")
        return record

    def new_args(self, stage: str, side: str) -> list[str]:
        extra = {"teacher": self.args.new_teacher_args, "distill": self.args.new_distill_args,
                 "evaluate": self.args.new_eval_args}[stage]
        return list(extra) if side == "new" else []

    # ----- parts
    def part_rate(self, budget: float) -> None:
        self.result["bf16_matmul"] = matmul_rate(self.scale["matmul_n"])

    def part_flops(self, budget: float) -> None:
        f = self.scale["flops"]
        argv = [str(HERE / "speed_flops.py"), "--teacher", self.args.teacher, "--device", "meta"]
        for key in ("teacher", "krr", "boost", "eval"):
            if f.get(key):
                argv += [f"--{key}-args", *f[key]]
        record = self.script("flops", argv, budget)
        self.result["flops"] = record.get("result") or {"error": record.get("log_tail")}

    def bf16(self) -> float | None:
        return (self.result.get("bf16_matmul") or {}).get("tflops")

    def part_teacher(self, budget: float) -> None:
        stage: dict[str, Any] = {"unit": "images/s", "preset": "teacher_cifar100",
                                 "recipe": "a warm-up epoch (compilation included), then timed epochs (images/s of the "
                                           "last one logged)"}
        for side, share in (("old", 0.35), ("new", 0.65)):  # of what is left; the new code may compile first
            out = self.work / f"teacher_{side}"
            command = ["teacher", "-c", "teacher_cifar100", f"out_dir={out}", f"data.path={self.data['cifar100']}",
                       *self.scale["teacher"], *self.scale["device_args"], *self.new_args("teacher", side),
                       "--no-progress"]
            # the new code compiles the ResNet-18 step (torch.compile, fwd + bwd: 59 s on 2 CPU cores here) before
            # its first epoch: at least NEW_TEACHER_FLOOR s when the call has them, taken from the later parts
            floor = NEW_TEACHER_FLOOR if side == "new" and not self.args.tiny else 0.0
            timeout = min(self.left(), max(floor, self.part_left() * share))
            record = self.ssdd("teacher", side, command, timeout, out / "metrics.jsonl")
            epochs = read_jsonl(out / "metrics.jsonl")
            record["value"] = epochs[-1]["images_per_s"] if len(epochs) >= 2 else None
            if len(epochs) >= 2:  # between the epochs' lines: the second epoch plus the first one's checkpoint
                per_epoch = epochs[-1]["images_per_s"] * epochs[-1]["epoch_s"]
                record["images_per_s_wall"] = arrival_rate(self.arrivals, epochs, per_epoch)
            record["epochs_logged"] = len(epochs)
            record["first_epoch_s"] = epochs[0].get("epoch_s") if epochs else None  # warm-up, compilation included
            stage[side] = record
            self.result["stages"]["teacher"] = stage
            self.save()
        add_ratios(stage, True)
        teacher_flops = (self.result.get("flops") or {}).get("teacher") or {}
        add_tflops(stage, teacher_flops.get("flops_per_step"), teacher_flops.get("batch") or 1, self.bf16())

    def part_parts(self, budget: float) -> None:
        """The teacher step by part, plain and fast (teacher_parts.py), in a call of its own share (the second
        call by default: the first one's teacher, distillation and official runs fill it)."""
        parts = [str(HERE / "teacher_parts.py"), "--data", str(self.data["cifar100"]), *self.scale["parts_steps"],
                 *self.args.teacher_parts_args, *(["--device", "cpu"] if self.args.tiny else [])]
        # both paths, the fast one compiling first: at least 90 s when the call has them
        self.result["teacher_parts"] = self.script("teacher_parts", parts, self.at_least(90))

    def distill_command(self, method: str, side: str, out: Path, extra: list[str]) -> list[str]:
        steps = self.scale["distill_steps"]
        # KRR-ST runs to its end (a short outer.steps: its manifest records the teacher cache's build); Boost
        # pauses instead (its end would add the post-hoc fit of the approximation networks)
        length = f"outer.steps={steps}" if method == "krr_st" else f"stop_after_steps={steps}"
        return ["distill", "-c", DISTILL_PRESETS[method], f"teacher={self.args.teacher}",
                f"data.path={self.data['cifar100']}", length,
                f"log_every={self.scale['log_every']}",
                "checkpoint_every=1000000", f"out_dir={out}", *self.scale["distill"][method],
                *self.scale["device_args"], *extra, "--no-progress"]

    def distill_variants(self, method: str) -> list[tuple[str, str, list[str]]]:
        """(name, src side, extra overrides) of each run of a method: the old code, the new code (its fast-path
        defaults, the teacher cache for KRR-ST, and --new-distill-args / --new-<method>-args), then every
        --variant METHOD:NAME:OVERRIDES (new code) while time is left."""
        own = getattr(self.args, f"new_{method}_args")
        runs = [("old", "old", []), ("new", "new", [*self.scale["cache"][method], *self.args.new_distill_args, *own])]
        return [*runs, *self.variants(method)]

    def variants(self, owner: str) -> list[tuple[str, str, list[str]]]:
        """(name, "new", overrides) of each --variant OWNER:NAME:OVERRIDES, in the order given."""
        found = [spec.split(":", 2) for spec in self.args.variant]
        return [(name, "new", shlex.split(overrides)) for who, name, overrides in found if who == owner]

    def add_rates(self, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """A loop's steps/s two ways, the first window dropped: as it logged them, and from when its lines
        appeared (Arrivals); the value is the second, which a deferred device sync cannot flatter."""
        record["windows"] = len(rows)
        record["steps_per_s_logged"] = window_rate(rows)
        record["steps_per_s_wall"] = arrival_rate(self.arrivals, rows)
        wall = record["steps_per_s_wall"]
        record["value"] = wall if wall is not None else record["steps_per_s_logged"]

    def part_distill(self, budget: float) -> None:
        plans = {method: self.distill_variants(method) for method in DISTILL_PRESETS}
        runs_left = sum(len(runs) for runs in plans.values())
        for method, runs in plans.items():
            stage: dict[str, Any] = {"unit": "steps/s", "preset": DISTILL_PRESETS[method],
                                     "recipe": f"{self.scale['distill_steps']} outer steps in windows of "
                                               f"{self.scale['log_every']}; steps/s from the wall time between "
                                               f"the windows' log lines, the first window dropped"}
            for name, side, extra in runs:
                out = self.work / f"{method}_{name}"
                # the new KRR-ST run builds its teacher cache and runs to its end (its manifest holds the build's
                # time): at least 45 s when the call has them
                floor = 45.0 if (method, name) == ("krr_st", "new") and not self.args.tiny else 0.0
                timeout = min(self.left(), max(floor, self.part_left() / runs_left))
                record = self.ssdd(f"distill_{method}_{name}", side, self.distill_command(method, side, out, extra),
                                   timeout, out / "metrics.jsonl")
                runs_left -= 1
                record["overrides"] = extra
                self.add_rates(record, read_jsonl(out / "metrics.jsonl"))
                record["teacher_cache_s"] = cache_seconds(out)
                stage[name] = record
                self.result["stages"][f"distill_{method}"] = stage
                self.save()
            add_ratios(stage, True)
            flops = (self.result.get("flops") or {}).get(method) or {}
            add_tflops(stage, flops.get("flops_per_step"), 1, self.bf16())
            old = (stage.get("old") or {}).get("value")
            for name, _, extra in runs:
                entry = stage.get(name) or {}
                executed = step_flops(flops, extra)  # a run with the teacher cache runs no teacher forward
                if entry.get("value") and executed:
                    entry["flops_per_step"] = executed
                    entry["tflops"] = executed * entry["value"] / 1e12
                    entry["fraction_of_bf16"] = entry["tflops"] / self.bf16() if self.bf16() else None
                if name not in ("old", "new"):  # the extra variants against the old code
                    entry["speedup"] = entry["value"] / old if entry.get("value") and old else None

    def part_official(self, budget: float) -> None:
        official = Path(self.args.official)
        if not (official / "algorithms" / "distill.py").is_file():
            self.result["parts_skipped"]["official"] = f"no official code at {official} (speed_prepare.sh)"
            return
        argv = [str(ROOT / "benchmarks" / "official_krr_st.py"), "--official", str(official),
                "--device", "cpu" if self.args.tiny else "cuda", "--preset", DISTILL_PRESETS["krr_st"],
                "--teacher", self.args.teacher, "--data", str(self.data["cifar100"]), "--configs", "reset",
                "--quiet", *self.scale["official"]]
        if self.args.new_distill_args:  # the tiny scale's list already ends with --overrides
            argv += ([] if "--overrides" in argv else ["--overrides"]) + self.args.new_distill_args
        record = self.script("official", argv, budget)
        result = record.pop("result", None) or {}
        configs = result.get("configurations") or [{}]
        record.update({"ssdd_code": "new", "ratio": configs[0].get("ratio"),
                       "ssdd_steps_per_s": configs[0].get("ssdd_steps_per_s"),
                       "official_steps_per_s": configs[0].get("official_steps_per_s"),
                       "official_aug": configs[0].get("official_aug"), "settings": result.get("settings"),
                       "pairs": len(configs[0].get("pairs") or []), "partial": result.get("partial")})
        self.result["official_krr_st"] = record

    def part_mkdt(self, budget: float) -> None:
        experts = self.work / "experts"
        record = self.ssdd("experts", "new", [
            "experts", "-c", "experts_cifar100", f"teacher={self.args.teacher}", f"data.path={self.data['cifar100']}",
            "num_experts=1", "epochs=4", f"out_dir={experts}", *self.scale["experts"], *self.scale["device_args"],
            "--no-progress"],
            self.part_left() * 0.3)
        stage: dict[str, Any] = {"unit": "iterations/s", "preset": "mkdt_cifar100", "experts": record}
        for side in ("old", "new"):
            out = self.work / f"mkdt_{side}"
            command = ["distill", "-c", "mkdt_cifar100", f"teacher={self.args.teacher}",
                       f"data.path={self.data['cifar100']}", f"mkdt.experts={experts}",
                       f"stop_after_steps={self.scale['mkdt_iterations']}", f"log_every={self.scale['mkdt_log_every']}",
                       "checkpoint_every=1000000", f"out_dir={out}", *self.scale["mkdt"], *self.scale["device_args"],
                       *self.new_args("distill", side), "--no-progress"]
            run = self.ssdd("mkdt", side, command, self.part_left() / (2 if side == "old" else 1),
                            out / "metrics.jsonl")
            self.add_rates(run, read_jsonl(out / "metrics.jsonl"))
            stage[side] = run
        add_ratios(stage, True)
        self.result["stages"]["mkdt"] = stage

    def evaluate_command(self, out: Path, targets: list[str], sets: list[str], extra: list[str]) -> list[str]:
        listed = ", ".join(f"{{source: npz, path: {self.data[t]}, name: {t}}}" for t in targets)
        return ["evaluate", "-c", "evaluate_full", f"teacher={self.args.teacher}", f"out_dir={out}",
                f"source.path={self.data['cifar100']}", f"targets=[{listed}]", *extra, *self.scale["device_args"],
                "--no-progress", "--allow-mismatch", "--distilled", *[str(Path(self.args.sets) / s) for s in sets]]

    def part_evaluate(self, budget: float) -> None:
        extra = ["seeds=1", "no_pretrain=false", "full_data.enabled=false", "full_data.same_recipe=false",
                 "cka_images=0", *self.scale["evaluate_cell"]]
        stage: dict[str, Any] = {"unit": "s", "preset": "evaluate_full",
                                 "recipe": "one cell: the committed Boost set, seed 0, CIFAR-100 target, fine-tune "
                                           "and linear probe; " + " ".join(self.scale["evaluate_cell"]),
                                 "value": "the cell's own time: pre-training plus every target x mode (the rows' "
                                          "pretrain_s + eval_s), without the process's start and data loading "
                                          "(wall_s has them)"}
        runs = [("old", "old", []), ("new", "new", self.new_args("evaluate", "new")), *self.variants("evaluate")]
        for number, (name, side, own) in enumerate(runs):
            out = self.work / f"cell_{name}"
            command = self.evaluate_command(out, ["cifar100"], ["boost_n100"], [*extra, *own])
            run = "evaluate_cell" if name in ("old", "new") else f"evaluate_cell_{name}"  # files of its own
            record = self.ssdd(run, side, command, self.part_left() / (len(runs) - number))
            rows = read_results(out)
            record["overrides"] = own
            record["cell_s"] = cell_seconds(rows)
            record["value"] = record["cell_s"] if record["exit_code"] == 0 else None
            record["rows"] = [{k: r.get(k) for k in ("label", "target", "mode", "pretrain_s", "eval_s",
                                                     "pretrain_steps", "pretrain_samples", "finetune_iterations",
                                                     "compiled", "precision")}
                              for r in rows]
            stage[name] = record
            self.result["stages"]["evaluate_cell"] = stage
            self.save()
        add_ratios(stage, False)
        flops = (self.result.get("flops") or {}).get("evaluate") or {}
        old = (stage.get("old") or {}).get("value")
        for name, _, _ in runs:
            entry = stage.get(name) or {}
            cell = cell_flops(entry.get("rows") or [], flops)
            if cell and entry.get("value"):
                entry["counted_flops"] = cell
                entry["tflops"] = cell / entry["value"] / 1e12
                entry["fraction_of_bf16"] = entry["tflops"] / self.bf16() if self.bf16() else None
            if name not in ("old", "new"):  # the extra variants against the old code (seconds: old / variant)
                entry["speedup"] = old / entry["value"] if entry.get("value") and old else None

    def part_protocol(self, budget: float) -> None:
        out = self.work / "protocol"
        targets = ["cifar10", "cifar100", "flowers102"]
        command = self.evaluate_command(out, targets, list(SETS), ["full_data.same_recipe=false",
                                                                   *self.scale["protocol"],
                                                                   *self.new_args("evaluate", "new")])
        command += ["--processes", self.args.protocol_processes]  # many cells at once on the one GPU
        record = self.ssdd("protocol", "new", command, budget)
        rows = read_results(out)
        seeds = 1 if self.args.tiny else 3
        planned = (len(SETS) + 2) * seeds * len(targets)  # 3 sets + no-pretrain + tuned full data
        done = {(r.get("label"), r.get("seed"), r.get("target")) for r in rows
                if r.get("mode") == "linear_probe"}  # a (row, seed, target) is done when its last mode is
        by_cell: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_cell.setdefault(f"{row.get('label')} seed {row.get('seed')}", []).append(row)
        record["processes"] = self.args.protocol_processes
        record.update({"cells_planned": planned, "cells_done": len(done), "deadline_s": budget,
                       "seconds_per_row_and_seed": {key: cell_seconds(group) for key, group in by_cell.items()},
                       "stopped_at_deadline": record["exit_code"] is None,
                       "rows": [{k: r.get(k) for k in ("label", "seed", "target", "mode", "pretrain_s", "eval_s")}
                                for r in rows],
                       "statement": f"{len(done)} of {planned} (row, seed, target) cells of the evaluate_full "
                                    f"protocol finished in {record['wall_s']:.0f} s"
                                    + (" (stopped at the deadline)" if record["exit_code"] is None else "")})
        self.result["protocol"] = record

    def check_new_args(self) -> str | None:
        """None when the new code's schemas accept the --new-*-args, else its error (the last lines)."""
        done = subprocess.run([sys.executable, "-c", CHECK_ARGS, json.dumps(self.result["new_args"])],
                              env=self.env("new"), capture_output=True, text=True, cwd=ROOT)
        return None if done.returncode == 0 else "\n".join(done.stderr.strip().splitlines()[-3:])

    def run(self, parts: list[str]) -> None:
        self.data = make_data(self.work / "data", self.scale)
        self.save()
        todo = list(parts)
        while todo:
            part = todo[0]
            budget = self.share(part, todo)
            if budget < self.min_run and part not in ("rate", "flops"):
                self.result["parts_skipped"][part] = f"no time left ({self.left():.0f} s)"
            else:
                print(f"[{time.monotonic() - self.start:.0f} s] {part}: up to {budget:.0f} s", flush=True)
                self.part_deadline = time.monotonic() + budget
                try:
                    getattr(self, f"part_{part}")(budget)
                    self.result["parts_done"].append(part)
                except Exception as exc:  # one broken part must not cost the others' numbers
                    self.result["parts_skipped"][part] = f"{type(exc).__name__}: {exc}"
            todo.pop(0)
            self.save()


def step_flops(flops: dict[str, Any], overrides: list[str]) -> float | None:
    """Counted FLOPs of one outer step as a run executes it: without the teacher's forward on the real batch when
    the run looks its targets up in the teacher cache (outer.teacher_cache=on)."""
    total = flops.get("flops_per_step")
    if total is None:
        return None
    settings = [o.split("=", 1)[1] for o in overrides if o.startswith("outer.teacher_cache=")]
    cached = bool(settings) and settings[-1] == "on"  # the last value of the key is the one that holds
    return float(total - ((flops.get("parts") or {}).get("teacher_forward_real") or 0) if cached else total)


def cache_seconds(out: Path) -> float | None:
    """The teacher cache's build time, from the finished run's manifest (None: no cache, or not finished)."""
    for manifest in sorted(out.rglob("manifest.json")) if out.is_dir() else []:
        seconds = json.loads(manifest.read_text()).get("teacher_cache_s")
        if seconds is not None:
            return float(seconds)
    return None


def read_results(folder: Path) -> list[dict[str, Any]]:
    """The rows of an evaluation folder: results.json, plus the cells its processes saved one by one
    (out_dir/cells/*.json, `ssdd evaluate --processes`) in a round that the deadline cut short."""
    path = folder / "results.json"
    data = json.loads(path.read_text()) if path.exists() else []
    rows = data if isinstance(data, list) else data.get("rows", [])
    for cell in sorted((folder / "cells").glob("*.json")) if (folder / "cells").is_dir() else []:
        if not cell.name.startswith("."):  # a temporary file of a killed write may be partial
            rows += [r for r in json.loads(cell.read_text()) if r not in rows]
    return rows


def cell_seconds(rows: list[dict[str, Any]]) -> float | None:
    """A cell's own time: its pre-training (pretrain_s, the same in each of its rows) plus each row's eval_s."""
    if not rows:
        return None
    return float(rows[0].get("pretrain_s") or 0.0) + sum(float(r.get("eval_s") or 0.0) for r in rows)


def cell_flops(rows: list[dict[str, Any]], flops: dict[str, Any]) -> float | None:
    """Counted FLOPs of a cell's pre-training and fine-tuning steps: images seen in pre-training (pretrain_samples,
    else steps x batch) and fine-tuning iterations, times the counted FLOPs per image / per step; the probe's
    feature passes are not counted."""
    pre, fine, batch = (flops.get(k) for k in ("pretrain_flops_per_step", "finetune_flops_per_step", "pretrain_batch"))
    if not rows or not pre or not fine or not batch:
        return None
    seen = max((r.get("pretrain_samples") or (r.get("pretrain_steps") or 0) * batch) for r in rows)
    finetune = sum((r.get("finetune_iterations") or 0) for r in rows if r.get("mode") == "finetune") * fine
    return float(seen * pre / batch + finetune)


def git_commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip() or None


def environment() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": sys.version.split()[0], "cpu_count": os.cpu_count()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    speed = ROOT / ".gpu" / "speed"
    parser.add_argument("--out", required=True, help="the JSON (rewritten after every part); a .log beside it")
    parser.add_argument("--seconds", type=float, default=320, help="the whole call's budget")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--old", default=str(speed / "old" / "src"), help="the old src folder (speed_prepare.sh)")
    parser.add_argument("--new", default=str(ROOT / "src"))
    parser.add_argument("--site", nargs="*", default=[str(speed / "site")],
                        help="folders added to PYTHONPATH (omegaconf, which the GPU image lacks)")
    parser.add_argument("--teacher", default=None, help="teacher folder (default: the committed GPU teacher)")
    parser.add_argument("--sets", default=None, help="folder of the committed N = 100 sets")
    parser.add_argument("--official", default=str(speed / "official"), help="checkout of db-Lee/selfsup_dd")
    parser.add_argument("--work", default=None, help="scratch folder: a new one is made inside it for each call")
    parser.add_argument("--tiny", action="store_true", help="tiny data and models on the CPU: checks the machinery")
    for stage in ("teacher", "distill", "eval"):
        parser.add_argument(f"--new-{stage}-args", default="", help=f"extra {stage} overrides for the new code only")
    for method in DISTILL_PRESETS:
        parser.add_argument(f"--new-{method.replace('_', '-')}-args", default="",
                            help=f"extra overrides of the new code's {method} run (after --new-distill-args)")
    parser.add_argument("--variant", action="append", default=[], metavar="STAGE:NAME:OVERRIDES",
                        help="one more new-code distillation run or evaluation cell, e.g. 'boost:bf16:"
                             "outer.precision=bf16 outer.teacher_precision=bf16' or 'evaluate:compiled:compile=on' "
                             "(repeatable; run after the stage's others while time is left; a run with "
                             "outer.teacher_cache=on should add data.subset=2000, else it builds the cache on all "
                             "50,000 images)")
    parser.add_argument("--protocol-processes", default="auto", metavar="N|auto",
                        help="ssdd evaluate --processes of the protocol part (new code): cells at once on the GPU")
    parser.add_argument("--check", action="store_true",
                        help="only check that the new code accepts the --new-*-args, and exit (no data, no runs)")
    parser.add_argument("--teacher-parts-args", default="",
                        help="extra options of teacher_parts.py (e.g. --compile off, --count-ops, or K=V "
                             "overrides of the step)")
    args = parser.parse_args(argv)
    args.teacher_parts_args = shlex.split(args.teacher_parts_args)
    for stage in ("teacher", "distill", "eval", *DISTILL_PRESETS):
        key = f"new_{stage}_args"
        setattr(args, key, shlex.split(getattr(args, key)))
    owners = [*DISTILL_PRESETS, "evaluate"]
    bad = [v for v in args.variant if v.count(":") < 2 or v.split(":")[0] not in owners
           or v.split(":")[1] in ("old", "new", "")]
    named = [tuple(v.split(":")[:2]) for v in args.variant]
    bad += [v for v, key in zip(args.variant, named, strict=True) if named.count(key) > 1]
    if bad:
        parser.error(f"--variant {bad[0]!r}: write STAGE:NAME:OVERRIDES with STAGE one of {owners} and a NAME "
                     f"of its own (not old, new or another variant's)")
    args.teacher = args.teacher or default_path(speed / "teacher", "artifacts/teachers/" + (
        "cifar100_convnet32_cpu" if args.tiny else "cifar100_resnet18_bt80_h200"), args.tiny)
    args.sets = args.sets or default_path(speed / "distilled", "artifacts/distilled/cifar100_resnet18_bt80_h200",
                                          args.tiny)
    unknown = [p for p in args.parts.split(",") if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {PARTS}")
    if not Path(args.old).is_dir():
        parser.error(f"--old {args.old}: no such folder (run benchmarks/gpu/speed_prepare.sh)")
    return args


def default_path(carried: Path, committed: str, tiny: bool) -> str:
    """The carried copy (speed_prepare.sh; the slimmed tree has no artifacts/) or else the committed folder."""
    return str(carried) if carried.is_dir() and not tiny else str(ROOT / committed)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    bench = Bench(args)
    error = bench.check_new_args()
    if error or args.check:
        print(f"the new code rejects the --new-*-args: {error}" if error else "the --new-*-args are valid settings")
        sys.exit(2 if error else 0)
    requested = args.parts.split(",")
    bench.run([p for p in PARTS if p in requested])
    print(json.dumps({k: bench.result.get(k) for k in ("device", "parts_done", "parts_skipped")}, indent=2))
    sys.path.insert(0, str(HERE))
    from speed_table import render

    print(render([bench.result]))


if __name__ == "__main__":
    main()
