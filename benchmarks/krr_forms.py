"""KRR in its primal and dual forms: float32 gradient error and outer-step time against the budget.

    python benchmarks/krr_forms.py noise  --teacher artifacts/teachers/cifar100_convnet32_cpu
    python benchmarks/krr_forms.py timing --teacher artifacts/teachers/cifar100_convnet32_cpu

`noise`: the `cpu` Boost preset's kernel (pool ConvNet width 32, depth 3, flattened 2,048-d features, a
real batch of 256) on M support rows of real CIFAR-100 images in the four rotations, targets from the
teacher. For each M it compares the loss and its gradients with respect to the support features and
targets, in float32 through each form, with `outer.solve_dtype=float64`, and with the defaults
(`outer.form=auto`, `outer.solve_dtype=auto`), against the same computation in float64 (where both forms agree).

`timing`: for budgets N in {10, 50, 100, 200, 500, 1000} at the `cpu` presets (KRR-ST: m images;
Boost: U = 200 at r = 16, V = 64, four views), in each form: the KRR part of an outer step alone (loss
forward and backward from given 2,048-d support features, `krr_s`), and up to `--full-step-max-rows`
support rows the whole support pass that grows with N (the pool member's forward and backward on the
M views plus the KRR part, `step_s`). The median of `--repeats` runs is reported with the FLOPs of the
KRR part (counted from the matrix shapes) and the achieved GFLOP/s. The teacher's forward on the real
batch and the pool's own SGD step do not depend on the form and are left out. A dual kernel over
`--max-dual-gib` is not attempted. Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import time
from pathlib import Path

import torch

from ssdd.artifacts.storage import BudgetError
from ssdd.augment import normalize, to_float
from ssdd.config import DataConfig, ModelConfig
from ssdd.data import load_split
from ssdd.distill.boost import BoostConfig, boost_samples
from ssdd.distill.budget import samples_for_budget
from ssdd.distill.krr import krr_loss, with_bias
from ssdd.models import build_model
from ssdd.teacher import load_teacher

POOL_MODEL = ModelConfig(name="convnet", width=32, depth=3, feature="flatten")
BUDGETS = [10, 50, 100, 200, 500, 1000]


def _setup(args: argparse.Namespace) -> tuple:
    torch.manual_seed(0)
    teacher = load_teacher(args.teacher, device="cpu")
    source = load_split(DataConfig(path=args.data, name="cifar100"), "train", seed=0)
    model = build_model(POOL_MODEL, 32).eval()
    return teacher, source, model


def _support(source, m: int, views: int) -> torch.Tensor:
    images = to_float(source.images[torch.randperm(source.images.shape[0])[:m]])
    return torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(views)])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b.double()) / torch.linalg.norm(b.double()))


def noise(args: argparse.Namespace) -> dict:
    teacher, source, model = _setup(args)
    with torch.no_grad():
        query = to_float(source.images[torch.randperm(source.images.shape[0])[:256]])
        phi_t = model(normalize(query, teacher.mean, teacher.std)).double()
        y_t = teacher(query).double()
    rows = []
    for m in args.rows:
        support = _support(source, m // 4, 4)
        with torch.no_grad():
            phi_s = model(normalize(support, teacher.mean, teacher.std)).double()
            y_s = teacher(support).double()

        def grads(dtype: torch.dtype, form: str, solve: torch.dtype | None = torch.float32, phi_s=phi_s,
                  y_s=y_s) -> list[torch.Tensor]:
            s, y = phi_s.to(dtype).requires_grad_(True), y_s.to(dtype).requires_grad_(True)
            if dtype == torch.float64:  # the reference: the primal normal equations in float64
                p_s, p_t = with_bias(s), with_bias(phi_t)
                gram = p_s.T @ p_s
                lam = args.ridge * torch.trace(gram).detach()
                w = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=dtype), p_s.T @ y)
                loss = torch.mean((p_t @ w - y_t) ** 2)
            else:
                loss = krr_loss(s, phi_t.to(dtype), y, y_t.to(dtype), args.ridge, form, solve)
            return [loss.detach(), *torch.autograd.grad(loss, [s, y])]

        ref = grads(torch.float64, "")
        row = {"support_rows": support.shape[0], "features_plus_bias": phi_s.shape[1] + 1}
        keys = {("dual", torch.float32): "dual", ("primal", torch.float32): "primal",
                ("auto", torch.float64): "auto_float64_solve", ("auto", None): "default"}
        for (form, solve), key in keys.items():  # "default": outer.form=auto, outer.solve_dtype=auto
            ours = grads(torch.float32, form, solve)
            row[key] = {"loss": _rel(ours[0], ref[0]), "grad_features": _rel(ours[1], ref[1]),
                         "grad_targets": _rel(ours[2], ref[2])}
        rows.append(row)
        print(json.dumps(row))
    return {"kind": "noise", "ridge": args.ridge, "rows": rows}


def krr_flops(m: int, p: int, n: int, d: int, form: str) -> float:
    """Multiply-adds x 2 of the KRR forward (support m x p with bias, query n, targets d), times 3 with backward."""
    if form == "dual":
        forward = m * m * p + m ** 3 / 3 + 2 * m * m * d + n * m * p + n * m * d
    else:
        forward = m * p * p + p ** 3 / 3 + 2 * p * p * d + m * p * d + n * p * d
    return 3 * 2 * forward


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(args: argparse.Namespace) -> dict:
    teacher, source, model = _setup(args)
    d, n = teacher.feature_dim, args.batch
    boost = BoostConfig(image_bases=200, image_resolution=16, target_bases=min(64, d))
    with torch.no_grad():
        query = to_float(source.images[:n])
        phi_t = model(normalize(query, teacher.mean, teacher.std))
        y_t = teacher(query)
    p = phi_t.shape[1] + 1
    rows = []
    for budget in args.budgets:
        shapes = {"krr_st": (samples_for_budget(budget, (3, 32, 32), d), 1)}
        try:
            shapes["boost"] = (boost_samples(boost, (3, 32, 32), d, budget)[0], 4)
        except BudgetError as exc:  # the fixed bases do not fit a small budget
            rows.append({"budget": budget, "method": "boost", "skipped": str(exc)})
        for method, (m, views) in shapes.items():
            rows_m = m * views
            y_s = torch.randn(rows_m, d)
            feats = torch.randn(rows_m, p - 1) * phi_t.std() + phi_t.mean()
            row = {"budget": budget, "method": method, "m": m, "support_rows": rows_m, "features_plus_bias": p,
                   "auto": "primal" if rows_m > p else "dual"}
            full = rows_m <= args.full_step_max_rows
            if full:
                images = to_float(source.images[torch.randint(0, source.images.shape[0], (rows_m,))])
            for form in ("dual", "primal"):
                gib = 4 * rows_m ** 2 / 2 ** 30
                if form == "dual" and gib > args.max_dual_gib:
                    row[form] = {"skipped": f"the {rows_m} x {rows_m} kernel needs {gib:.1f} GiB"}
                    continue

                def krr_part(form=form, feats=feats, y_s=y_s) -> None:
                    s_ = feats.clone().requires_grad_(True)
                    y_ = y_s.clone().requires_grad_(True)
                    krr_loss(s_, phi_t, y_, y_t, 1e-6, form).backward()

                def full_step(form=form, images=images if full else None, y_s=y_s) -> None:
                    x = images.clone().requires_grad_(True)
                    y_ = y_s.clone().requires_grad_(True)
                    krr_loss(model(normalize(x, teacher.mean, teacher.std)), phi_t, y_, y_t, 1e-6, form).backward()

                repeats = args.repeats if rows_m <= 5000 else 1
                flops = krr_flops(rows_m, p, n, d, form)
                krr_s = _time(krr_part, repeats)
                row[form] = {"krr_s": round(krr_s, 4), "krr_gflop": round(flops / 1e9, 2),
                             "krr_gflop_per_s": round(flops / 1e9 / krr_s, 1)}
                if full:
                    row[form]["step_s"] = round(_time(full_step, repeats), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"kind": "timing", "batch": n, "pool_model": "convnet width 32 depth 3 flatten (2,048-d)",
            "note": "krr_s: KRR loss forward + backward from given features; step_s: the pool member's forward "
                    "and backward on the support views plus the KRR part", "rows": rows}


def dtype_cost(args: argparse.Namespace) -> dict:
    """Boost's support pass in the auto (primal) form with the solve in float32 and in float64, alternating."""
    teacher, source, model = _setup(args)
    d, n = teacher.feature_dim, args.batch
    boost = BoostConfig(image_bases=200, image_resolution=16, target_bases=min(64, d))
    with torch.no_grad():
        query = to_float(source.images[:n])
        phi_t = model(normalize(query, teacher.mean, teacher.std))
        y_t = teacher(query)
    rows = []
    for budget in args.budgets:
        try:
            m = boost_samples(boost, (3, 32, 32), d, budget)[0]
        except BudgetError:
            continue
        images = to_float(source.images[torch.randint(0, source.images.shape[0], (4 * m,))])
        y_s = torch.randn(4 * m, d)
        times: dict[str, list[float]] = {"float32": [], "float64": []}
        for _ in range(args.repeats):
            for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
                def step(dtype=dtype, images=images, y_s=y_s) -> None:
                    x = images.clone().requires_grad_(True)
                    y_ = y_s.clone().requires_grad_(True)
                    krr_loss(model(normalize(x, teacher.mean, teacher.std)), phi_t, y_, y_t, 1e-6, "auto",
                             dtype).backward()
                times[name].append(_time(step, 1))
        row = {"budget": budget, "support_rows": 4 * m, "form": "primal" if 4 * m > phi_t.shape[1] + 1 else "dual",
               **{f"step_s_{k}": round(statistics.median(v), 3) for k, v in times.items()}}
        row["float64_over_float32"] = round(row["step_s_float64"] / row["step_s_float32"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"kind": "dtype", "batch": n, "note": "step_s: the pool member's forward and backward on the Boost "
            "support views plus the KRR part, median of alternating runs", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["noise", "timing", "dtype"])
    parser.add_argument("--teacher", default="artifacts/teachers/cifar100_convnet32_cpu")
    parser.add_argument("--data", default="data/cifar100.npz")
    parser.add_argument("--rows", type=int, nargs="+", default=[384, 1024, 1600, 2160, 3200, 4320])
    parser.add_argument("--ridge", type=float, default=1e-6)
    parser.add_argument("--budgets", type=float, nargs="+", default=BUDGETS)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-dual-gib", type=float, default=2.0)
    parser.add_argument("--full-step-max-rows", type=int, default=9000,
                        help="time the whole support pass (pool member + KRR) up to this many support rows")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {"noise": noise, "timing": timing, "dtype": dtype_cost}[args.what](args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result.update({"date": datetime.date.today().isoformat(), "commit": commit, "threads": torch.get_num_threads(),
                   "device": "cpu"})
    out = Path(args.out or f"benchmarks/results/krr_forms_{args.what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
