"""Golden fingerprints: prove that a refactor changes nothing that ssdd computes.

Runs the demo study (`ssdd reproduce -c study_demo`: teacher, experts, Boost, KRR-ST, MKDT and random sets,
evaluation) and three short distillations on other code paths (Boost with joint approximation networks and
identity-only kernel views, KRR-ST in the dual form, MKDT from a random start), all in one thread, then
fingerprints what they wrote:

- every safetensors file: the SHA-256 of each tensor's bytes, keyed by the file's path relative to the run
  folder (the study's folder names hold the stages' cache keys, so a changed key shows as a changed path);
- every results.json: each row's results-relevant fields (timings and devices left out);
- every metrics.jsonl: each logged row (losses, learning rates; rates and timings left out).

    python benchmarks/golden.py --out runs/golden            # print the fingerprints as JSON
    python benchmarks/golden.py --out runs/golden --write tests/golden/fingerprints.json

`tests/test_golden.py` runs the same and compares with the committed file. Bit-identity holds for one
platform (torch version and CPU capability, both recorded); on another the test says so and skips.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

# row fields that vary run to run or machine to machine without any change in what was computed
VOLATILE_ROW_KEYS = ("pretrain_s", "eval_s", "distill_s", "device", "distill_device")
VOLATILE_METRIC_SUFFIXES = ("_per_s", "_s", "seconds")  # rates and timings in metrics.jsonl

SHORT_RUNS = {  # name -> (preset, overrides); the teacher and experts come from the demo study
    "boost_joint": ("demo_distill_boost", ["outer.steps=20", "boost.approximation=joint",
                                           "boost.kernel_views=identity", "boost.approx_steps=50"]),
    "krr_st_dual": ("demo_distill", ["outer.steps=20", "outer.form=dual", "budget=10"]),
    "mkdt_random": ("demo_distill_mkdt", ["mkdt.iterations=6", "mkdt.init=random"]),
}


def platform() -> dict[str, str]:
    return {"torch": torch.__version__.split("+")[0], "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _ssdd(cwd: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("SSDD_TRACEBACK", None)
    done = subprocess.run([sys.executable, "-m", "ssdd", *args], env=env, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"ssdd {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def run_all(out: Path) -> None:
    """Every run, from inside `out` (so nothing in the working folder, such as a data/ folder, takes part)."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    study = out / "demo"
    _ssdd(out, "reproduce", "--no-progress", "-c", "study_demo", f"out_dir={study}")
    teacher = next(study.glob("teacher/teacher-*/teacher"))
    experts = next(study.glob("experts/experts-*"))
    for name, (preset, overrides) in SHORT_RUNS.items():
        extra = [f"mkdt.experts={experts}"] if preset == "demo_distill_mkdt" else []
        _ssdd(out, "distill", "--no-progress", "-c", preset, f"teacher={teacher}", f"out_dir={out / 'short' / name}",
              *overrides, *extra)


def _tensor_hashes(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return {key: hashlib.sha256(f.get_tensor(key).contiguous().view(torch.uint8).numpy().tobytes()
                                    ).hexdigest()[:16] for key in sorted(f.keys())}


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = json.loads(path.read_text())
    return [{k: v for k, v in sorted(row.items()) if k not in VOLATILE_ROW_KEYS} for row in rows]


def _metrics(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in sorted(row.items()) if not k.endswith(VOLATILE_METRIC_SUFFIXES)} for row in rows]


def fingerprint(out: Path) -> dict[str, Any]:
    tensors = {str(p.relative_to(out)): _tensor_hashes(p) for p in sorted(out.rglob("*.safetensors"))}
    results = {str(p.relative_to(out)): _rows(p) for p in sorted(out.rglob("results.json"))}
    results |= {str(p.relative_to(out)): _metrics(p) for p in sorted(out.rglob("metrics.jsonl"))}
    return {"platform": platform(), "tensors": tensors, "results": results}


def compare(golden: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Every difference, one line each: a missing or changed file or tensor, a changed result field. Fields a
    newer version adds to a row are not differences (the golden rows name what must stay the same)."""
    problems = []
    for section in ("tensors", "results"):
        for name, value in golden[section].items():
            if name not in now[section]:
                problems.append(f"{section}: {name} is missing")
            elif section == "tensors" and value != now[section][name]:
                problems.append(f"tensors: {name} differs")
            elif section == "results":
                rows = now[section][name]
                if len(rows) != len(value):
                    problems.append(f"results: {name} has {len(rows)} rows, not {len(value)}")
                for i, (old, new) in enumerate(zip(value, rows, strict=False)):
                    problems += [f"results: {name} row {i} {k}: {old[k]!r} -> {new.get(k)!r}"
                                 for k in old if new.get(k) != old[k]]
        problems += [f"{section}: {name} is new" for name in now[section] if name not in golden[section]]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="an empty folder for the runs")
    parser.add_argument("--write", type=Path, help="write the fingerprints here")
    parser.add_argument("--compare", type=Path, help="compare with these fingerprints; exit 1 on any difference")
    args = parser.parse_args()
    run_all(args.out)
    now = fingerprint(args.out)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(now, indent=1) + "\n")
    if args.compare:
        problems = compare(json.loads(args.compare.read_text()), now)
        print("\n".join(problems) or "identical")
        return 1 if problems else 0
    if not args.write:
        print(json.dumps(now, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
