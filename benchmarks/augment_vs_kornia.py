"""Time the Barlow Twins two-view augmentation: ssdd's batched ops against the same pipeline in kornia.

    pip install kornia   # not a dependency of ssdd; only this benchmark needs it
    python benchmarks/augment_vs_kornia.py [--batch 256] [--size 32] [--repeats 20]

Both pipelines: RandomResizedCrop(scale 0.08-1) -> ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8) -> Grayscale(p=0.2)
-> Solarize(p=0 / 0.2, threshold 0.5) -> HorizontalFlip(p=0.5), per-sample parameters, two views.
Reports the median time per batch (CUDA events on a GPU, perf_counter on the CPU).
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

from ssdd.augment import TwoViewConfig, two_views


def kornia_views(size: int):
    import kornia.augmentation as K

    def view(solarize_p: float):
        return K.AugmentationSequential(
            K.RandomResizedCrop((size, size), scale=(0.08, 1.0)),
            K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomSolarize(thresholds=0.0, additions=0.0, p=solarize_p),
            K.RandomHorizontalFlip(p=0.5),
        )

    first, second = view(0.0), view(0.2)
    return lambda x: (first(x), second(x))


def timed(fn, x: torch.Tensor, repeats: int) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/augment_vs_kornia.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    cfg = TwoViewConfig()
    ours = timed(lambda b: two_views(b, cfg, generator), x, args.repeats)
    print(f"device {device}, batch {args.batch} x 3 x {args.size} x {args.size}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"ssdd.augment.two_views   {1000 * ours:8.2f} ms/batch")
    result = {"date": datetime.date.today().isoformat(), "device": str(device), "threads": torch.get_num_threads(),
              "batch": args.batch, "size": args.size, "repeats": args.repeats, "ssdd_ms": 1000 * ours}
    try:
        theirs = timed(kornia_views(args.size), x, args.repeats)
        import kornia

        result.update(kornia=kornia.__version__, kornia_ms=1000 * theirs)
        print(f"kornia {kornia.__version__:<17} {1000 * theirs:8.2f} ms/batch  ({theirs / ours:.1f}x ssdd's time)")
    except ImportError:
        print("kornia is not installed: pip install kornia")
    result["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                      text=True).stdout.strip()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
