"""Which split of the KRR step pays under torchrun: the real batch only, or the support (distilled) rows too.

    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 benchmarks/distributed_split.py --rows 96 540 2160 \\
        --json benchmarks/results/distributed_split_cpu_2proc.json
    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 benchmarks/distributed_split.py --rows 16 32 64 --repeats 8 \\
        --json benchmarks/results/distributed_split_cpu_2proc_small.json
    OMP_NUM_THREADS=2 python benchmarks/distributed_split.py --rows 96 540 2160 \\
        --json benchmarks/results/distributed_split_cpu_1proc.json          # one process, for reference

Times the gradient part of one outer step as `ssdd.distill.outer` runs it (teacher and pool features of this
process's slice of the real batch, the support embedding, the KRR loss, backward, the all_reduce of the
gradients), with `outer.split_support` false (never) and true (always), alternating the two modes every
repetition so that a change in the machine's load hits both alike; and, apart, the pool member's SGD step
(on `pool.batch_size` = 256 views), which every process repeats whatever the split. Synthetic tensors at
the `cpu` presets' shapes: 32 px, a ConvNet-32 teacher (d = 128, pooled features) and a ConvNet-32 pool
member (flattened 2048-d features).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ssdd.config import ModelConfig
from ssdd.distill.krr import krr_loss
from ssdd.distill.outer import sum_over_processes, support_features
from ssdd.distill.pool import ModelPool, PoolConfig
from ssdd.models import build_model
from ssdd.run import distributed as D


def _pool(teacher_dim: int) -> ModelPool:
    build = lambda: build_model(ModelConfig(name="convnet", width=32, depth=3, feature="flatten"), 32)  # noqa: E731
    return ModelPool(PoolConfig(size=1, max_steps=10**6, batch_size=256), build, teacher_dim, torch.device("cpu"),
                     torch.Generator().manual_seed(0))


def gradient_step(pool: ModelPool, teacher: torch.nn.Module, real: torch.Tensor, support: torch.Tensor,
                  targets: torch.Tensor, split: bool) -> float:
    """Seconds of one gradient computation as the outer loop does it (this process's slice of `real`)."""
    start = time.perf_counter()
    query = D.rank_rows(real.shape[0])
    with torch.no_grad():
        x_t = real[query]
        y_t, phi_t = teacher(x_t), pool.features(0, x_t)
    support.grad, targets.grad = None, None
    phi_s = support_features(pool, 0, support, split)
    share = (query.stop - query.start) / real.shape[0]
    loss = krr_loss(phi_s, phi_t, targets, y_t, dtype=torch.float32) * share  # as recorded (before solve_dtype=auto)
    loss.backward(inputs=[support, targets])
    sum_over_processes(loss.detach(), [support, targets])
    return time.perf_counter() - start


def measure(rows: int, batch: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    teacher = build_model(ModelConfig(name="convnet", width=32, depth=3, feature="pool"), 32).eval()
    pool = _pool(teacher.feature_dim)
    real = torch.rand(batch, 3, 32, 32)
    support = torch.rand(rows, 3, 32, 32, requires_grad=True)
    targets = torch.randn(rows, teacher.feature_dim, requires_grad=True)
    times: dict[str, list[float]] = {"never": [], "always": []}
    modes = ["never", "always"] if D.split_sizes(rows)[0] < rows else ["never"]
    for repeat in range(repeats + 1):
        for mode in modes if repeat % 2 else modes[::-1]:
            seconds = gradient_step(pool, teacher, real, support, targets, mode == "always")
            if repeat:  # the first repetition warms up
                times[mode].append(seconds)
    pool_times = []
    for _ in range(max(3, repeats // 2)):
        start = time.perf_counter()
        pool.train_step(0, support.detach(), targets.detach())
        pool_times.append(time.perf_counter() - start)
    result = {f"gradient_ms_split_{mode}": 1000 * statistics.median(t) for mode, t in times.items() if t}
    result["pool_step_ms"] = 1000 * statistics.median(pool_times)
    # every process's numbers, worst first: a step waits for the slowest process
    gathered = D.all_gather_objects(result)
    return {key: max(r[key] for r in gathered) for key in result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[96, 540, 2160], help="support rows M")
    parser.add_argument("--batch", type=int, default=256, help="real batch (outer.batch_size), split over processes")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with D.process_group("cpu") as info:
        results = []
        for rows in args.rows:
            entry = {"rows": rows, "batch": args.batch, "processes": info.world_size,
                     "threads_per_process": torch.get_num_threads(), **measure(rows, args.batch, args.repeats)}
            results.append(entry)
            if info.is_main:
                print(json.dumps(entry))
        if info.is_main and args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
