"""Boost against KRR-ST at the same storage budget: outer steps/s (and m, views) on this machine.

    python benchmarks/boost_speed.py --config distill_boost_cpu --budget 100

Both run the real `ssdd distill` code from the same config and --teacher (so the same teacher, real batch, pool
network and pool minibatch), KRR-ST with targets counted; Boost also with `kernel_views=identity`
(open point 1). Needs data/cifar100.npz (`make data`).
"""

from __future__ import annotations

import argparse

from distill_speed import measure, save_result

VARIANTS = {
    "krr_st": ["method=krr_st"],
    "boost": ["method=boost"],
    "boost (kernel on identity views)": ["method=boost", "boost.kernel_views=identity"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="distill_boost_cpu", help="a YAML file or a packaged preset")
    parser.add_argument("--teacher", default="artifacts/teachers/cifar100_convnet32_cpu")
    parser.add_argument("--budget", type=float, default=100)
    parser.add_argument("--steps", type=int, default=10, help="timed outer steps (after 2 warm-up steps)")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra key=value for every variant")
    parser.add_argument("--out", default="benchmarks/results/boost_speed_cpu.json")
    args = parser.parse_args()
    from ssdd.config import load_config
    from ssdd.distill.config import DistillConfig

    base = load_config(DistillConfig, args.config, args.overrides)
    common = [f"teacher={args.teacher}", f"budget={args.budget}", "pool.size=2", "pool.max_steps=3", *args.overrides]
    rows = []
    for name, extra in VARIANTS.items():
        record = measure(common + extra, args.steps, args.config)
        rows.append({"variant": name, **record})
        print(f"{name:34s} m = {record['m']:4d}, {record['training_pairs']:5d} views: "
              f"{record['steps_per_s']:.3f} steps/s")
    save_result(args.out, base.device, {"config": args.config, "teacher": args.teacher, "budget": args.budget,
                                        "overrides": args.overrides,
                                        "rows": rows})


if __name__ == "__main__":
    main()
