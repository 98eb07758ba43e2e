"""GPU speed check for one device call: teacher epoch time, distillation steps/s (one GPU and all GPUs),
MKDT's expert epoch and iteration times, and the time of one evaluation cell, written to one JSON.

    python3 benchmarks/gpu/speed.py --out $OUT/speed.json [--teacher DIR] [--data data/cifar100.npz]

Needs the decoded CIFAR-100 (`benchmarks/gpu/unpack_pack.py`, see reference.sh) and a ResNet-18 teacher
(default: the committed artifacts/teachers/cifar100_resnet18_bt80_h200). Each part runs the real
commands with short settings (about 6 minutes in all on one H200); with several GPUs the distillation
runs again under torchrun on all of them. steps/s are read from each run's metrics.jsonl (the first
logging window, which includes warm-up, is dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def run(cmd: list[str], log: list[str]) -> float:
    start = time.perf_counter()
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    log.append("$ " + " ".join(cmd) + "\n" + done.stdout[-2000:] + done.stderr[-2000:])
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return time.perf_counter() - start if done.returncode == 0 else float("nan")


def steps_per_s(folder: Path) -> float | None:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()] \
        if (folder / "metrics.jsonl").exists() else []
    rows = rows[1:] or rows
    return sum(r["steps_per_s"] for r in rows) / len(rows) if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--teacher", default="artifacts/teachers/cifar100_resnet18_bt80_h200")
    parser.add_argument("--data", default="data/cifar100.npz")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--mkdt-iterations", type=int, default=50)
    args = parser.parse_args()
    gpus = torch.cuda.device_count()
    ssdd = [sys.executable, "-m", "ssdd"]
    log: list[str] = []
    result: dict = {"device": torch.cuda.get_device_name(0) if gpus else "cpu", "gpus": gpus,
                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    work = Path(tempfile.mkdtemp())

    # teacher: two short epochs of the reference recipe on 25,600 images (the second one is timed)
    teacher_dir = work / "teacher"
    run([*ssdd, "teacher", "-c", "teacher_cifar100", f"out_dir={teacher_dir}", f"data.path={args.data}",
         "data.subset=25600", "optim.epochs=3", "stop_after_epochs=2", "--no-progress"], log)
    epochs = [json.loads(line) for line in (teacher_dir / "metrics.jsonl").read_text().splitlines()] \
        if (teacher_dir / "metrics.jsonl").exists() else []
    if epochs:
        rate = epochs[-1]["images_per_s"]
        result["teacher"] = {"images_per_s": rate, "epoch_s_50k": 50000 / rate,
                             "recipe": "teacher_cifar100 (ResNet-18, batch 256, bf16, channels-last)"}

    # distillation: the paper presets for a few hundred steps, one GPU then all of them
    presets = {"krr_st": "distill_krr_st_cifar100", "boost": "cifar100"}
    result["distill"] = {}
    for method, preset in presets.items():
        common = ["-c", preset, f"teacher={args.teacher}", f"data.path={args.data}", f"outer.steps={args.steps}",
                  "log_every=50", "checkpoint_every=100000", "--no-progress"]
        one = work / f"{method}_1"
        seconds = run([*ssdd, "distill", *common, f"out_dir={one}"], log)
        entry = {"preset": preset, "steps": args.steps, "steps_per_s_1gpu": steps_per_s(one), "wall_s_1gpu": seconds}
        if gpus > 1:
            many = work / f"{method}_{gpus}"
            torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "-m", "ssdd"]
            entry["wall_s_all"] = run([*torchrun, "distill", *common, f"out_dir={many}"], log)
            entry[f"steps_per_s_{gpus}gpu"] = steps_per_s(many)
        result["distill"][method] = entry

    # MKDT: one expert of the official recipe for 3 epochs (epoch time), then MKDT iterations with it
    experts = work / "experts"
    seconds = run([*ssdd, "experts", "-c", "experts_cifar100", f"teacher={args.teacher}", f"data.path={args.data}",
                   "num_experts=1", "epochs=3", f"out_dir={experts}", "--no-progress"], log)
    manifest = json.loads((experts / "manifest.json").read_text()) if (experts / "manifest.json").exists() else {}
    trained_s = manifest.get("experts", [{}])[0].get("seconds") if manifest else None
    mkdt_dir = work / "mkdt"
    mkdt_seconds = run([*ssdd, "distill", "-c", "mkdt_cifar100", f"teacher={args.teacher}", f"data.path={args.data}",
                        f"mkdt.experts={experts}", f"mkdt.iterations={args.mkdt_iterations}", "log_every=10",
                        "checkpoint_every=100000", f"out_dir={mkdt_dir}", "--no-progress"], log)
    result["mkdt"] = {"experts_wall_s_1x3_epochs": seconds, "expert_epoch_s": trained_s and trained_s / 3,
                      "mkdt_iterations": args.mkdt_iterations, "mkdt_wall_s": mkdt_seconds,
                      "mkdt_iterations_per_s": steps_per_s(mkdt_dir),
                      "recipe": "experts_cifar100 (ConvNet-128 instance norm, batch 256) and mkdt_cifar100 "
                                "(40 student steps on all 85 images, recompute on)"}

    # one evaluation cell: the committed Boost set, ConvNet-128, CIFAR-100 target, both modes
    evaluation = work / "evaluate"
    seconds = run([*ssdd, "evaluate", "-c", "evaluate_full", f"teacher={args.teacher}", f"out_dir={evaluation}",
                   f"source.path={args.data}", f"targets=[{{source: npz, path: {args.data}, name: cifar100}}]",
                   "seeds=1", "no_pretrain=false", "full_data.enabled=false", "--no-progress",
                   "-d", "artifacts/distilled/cifar100_resnet18_bt80_h200/boost_n100"], log)
    rows = json.loads((evaluation / "results.json").read_text()) if (evaluation / "results.json").exists() else []
    result["evaluate"] = {"wall_s_one_cell": seconds, "rows": [
        {k: r.get(k) for k in ("label", "mode", "top1", "pretrain_s", "eval_s")} for r in rows]}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.out).with_suffix(".log").write_text("\n\n".join(log))
    print(json.dumps(result, indent=2))
    os.sync()


if __name__ == "__main__":
    main()
