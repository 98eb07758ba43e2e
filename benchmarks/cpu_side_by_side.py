"""The CPU path of the old code and of the new one, side by side: the demo study, end to end, alternately.

    python benchmarks/cpu_side_by_side.py [--old-commit c04162e] [--rounds 2] [--out benchmarks/results/X.json]

The demo study (`ssdd reproduce -c study_demo`: teacher, experts, Boost, KRR-ST, MKDT and the random set, then the
evaluation) runs every stage's default CPU path. The old code is the `src` of `--old-commit` (git archive into a
temporary folder), the new one this checkout's `src`; each round runs old then new (or new then old, alternating
the order) in fresh output folders, so nothing is cached, in one process each with PYTHONPATH on its src. Prints
and writes the wall seconds of every run, the medians and their ratio (old / new: above 1 means the new code is
faster), with the machine's load before and after: on a shared machine the spread says how much is noise.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def old_src(commit: str, folder: Path) -> Path:
    """The `src` tree of `commit`, extracted under `folder`."""
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def run_study(src: Path, out_dir: Path) -> float:
    """Wall seconds of the demo study under `src` (fresh out_dir); raises when it fails."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ssdd", "reproduce", "-c", "study_demo", f"out_dir={out_dir}",
                           "--no-progress"], env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the demo study failed under {src}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-commit", default="c04162e")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        srcs = {"old": old_src(args.old_commit, Path(tmp) / "old"), "new": ROOT / "src"}
        for i in range(args.rounds):
            for side in (("old", "new") if i % 2 == 0 else ("new", "old")):
                seconds[side].append(run_study(srcs[side], Path(tmp) / f"{side}_{i}"))
                print(f"round {i + 1} {side}: {seconds[side][-1]:.1f} s", flush=True)
    median = {side: statistics.median(values) for side, values in seconds.items()}
    result = {"what": "ssdd reproduce -c study_demo, fresh out_dir each run (nothing cached), CPU default paths",
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "date": datetime.date.today().isoformat(),
              "commit": {"new": commit, "old": args.old_commit}, "threads": os.environ.get("OMP_NUM_THREADS"),
              "cpu_count": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
              "seconds": seconds, "median_s": median, "old_over_new": median["old"] / median["new"]}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
