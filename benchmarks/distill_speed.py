"""KRR-ST outer-loop speed (steps/s) for several m, teacher forward on the real batch included.

    python benchmarks/distill_speed.py --teacher artifacts/teachers/cifar100_convnet32_cpu --m 100 1000

Runs the real `ssdd distill` code with `count_targets=false` (so budget = m images) for a few timed steps
after the pool warm start, and reads steps/s from its metrics. Needs data/cifar100.npz (`make data`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill


def measure(overrides: list[str], steps: int, config: str | None = None) -> dict[str, float]:
    """Run `ssdd distill` with these overrides for steps + 2 outer steps; the steps/s of the last `steps`
    (read from metrics.jsonl) and the wall-clock of the whole run (set-up and pool warm start included)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(DistillConfig, config, [
            f"out_dir={tmp}", f"outer.steps={steps + 2}", f"log_every={steps + 2}", f"checkpoint_every={10 * steps}",
            *overrides])
        start = time.perf_counter()
        distilled = run_distill(cfg, show_progress=False)
        wall = time.perf_counter() - start
        lines = (Path(tmp) / "metrics.jsonl").read_text().splitlines()
        record = json.loads(lines[-1])
    return {"steps_per_s": record["steps_per_s"], "wall_s": wall, "m": distilled.manifest["m"],
            "training_pairs": distilled.manifest.get("training_pairs", distilled.manifest["m"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="artifacts/teachers/cifar100_convnet32_cpu")
    parser.add_argument("--data", default="data/cifar100.npz")
    parser.add_argument("--m", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=20, help="timed outer steps (after 2 warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=1024, help="real images per outer step")
    parser.add_argument("--pool-width", type=int, default=128, help="ConvNet width of the pool models")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results/distill_speed.json")
    parser.add_argument("--overrides", nargs="*", default=[],
                        help="more distill settings, e.g. outer.teacher_cache=on data.subset=512")
    args = parser.parse_args()
    rows = []
    for m in args.m:
        record = measure([f"teacher={args.teacher}", f"data.path={args.data}", "method=krr_st", f"budget={m}",
                          "count_targets=false", f"outer.batch_size={args.batch_size}",
                          f"outer.model.width={args.pool_width}", "pool.max_steps=2", "pool.size=2",
                          f"device={args.device}", *args.overrides], args.steps)
        rows.append({"m": m, "steps_per_s": record["steps_per_s"], "wall_s": record["wall_s"]})
        print(f"m = {m:5d}: {record['steps_per_s']:.3f} outer steps/s (batch {args.batch_size}, "
              f"pool ConvNet width {args.pool_width}; {record['wall_s']:.1f} s in all)")
    save_result(args.out, args.device, {"batch_size": args.batch_size, "pool_width": args.pool_width,
                                        "teacher": args.teacher, "overrides": args.overrides, "rows": rows})


def save_result(out: str, device: str, payload: dict) -> None:
    """Write payload with the date, commit, device and threads beside it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() and device != "cpu" else "cpu"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"date": datetime.date.today().isoformat(), "commit": commit, "device": name,
                                     "threads": torch.get_num_threads(), **payload}, indent=2) + "\n")


if __name__ == "__main__":
    main()
