"""MKDT's unrolled student steps: memory kept for the backward pass and time, with and without recomputation.

    OMP_NUM_THREADS=1 python benchmarks/mkdt_unroll.py [--width 32] [--images 96] [--steps 5 10 20]

The `distill_mkdt_cpu` shapes by default: MTT's ConvNet of width 32, depth 3, 32 px, a head to d = 128, all
96 distilled images in every student step. For each number of student steps it runs one matching loss
forward and backward (random images, targets and expert vectors: memory and time do not depend on their
values) with `recompute` on and off, and reports the bytes autograd holds for the backward pass at the end
of the forward (every tensor saved for backward and still alive, counted once per storage, via
torch.autograd.graph.saved_tensors_hooks) and the wall-clock of forward + backward (median of --repeats,
the two modes alternating). Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import time
import weakref
from pathlib import Path

import torch

from ssdd.config import ModelConfig
from ssdd.distill.pool import PoolMember
from ssdd.distill.unroll import FlatModel, matching_loss, minibatches, unrolled_sgd
from ssdd.models import build_model


def run(model: FlatModel, theta: torch.Tensor, images: torch.Tensor, targets: torch.Tensor, steps: int,
        recompute: bool) -> tuple[int, float]:
    """(bytes saved for backward at the end of the forward, seconds of forward + backward)."""
    held: list[weakref.ref] = []  # tensors autograd saved; those of freed graphs (inner steps) die

    def pack(t: torch.Tensor) -> torch.Tensor:
        held.append(weakref.ref(t))
        return t

    x = images.clone().requires_grad_(True)
    y = targets.clone().requires_grad_(True)
    lr = torch.tensor(0.1, requires_grad=True)
    batches = minibatches(images.shape[0], 0, steps, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        end = unrolled_sgd(model, theta, x, y, lr, batches, recompute)
        loss = matching_loss(end, theta, theta + 0.01)
    alive = {}
    for ref in held:
        t = ref()
        if t is not None:
            alive[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    saved = sum(alive.values())
    loss.backward()
    return saved, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/mkdt_unroll.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    module = PoolMember(build_model(ModelConfig(name="convnet_mtt", width=args.width, depth=3), 32), args.dim)
    model = FlatModel(module)
    theta = model.flatten()
    images, targets = torch.randn(args.images, 3, 32, 32), torch.randn(args.images, args.dim)
    rows = []
    for steps in args.steps:
        row: dict[str, object] = {"syn_steps": steps}
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for recompute in (True, False):
                saved, seconds = run(model, theta, images, targets, steps, recompute)
                row[f"saved_mib_{'recompute' if recompute else 'plain'}"] = round(saved / 2**20, 2)
                times[recompute].append(seconds)
        row["seconds_recompute"] = round(statistics.median(times[True]), 3)
        row["seconds_plain"] = round(statistics.median(times[False]), 3)
        rows.append(row)
        print(row, flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    payload = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit,
               "torch": torch.__version__, "threads": torch.get_num_threads(), "parameters": model.size,
               "settings": vars(args), "rows": rows}
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
