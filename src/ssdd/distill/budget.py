"""From a storage budget to the number of distilled samples m."""

from __future__ import annotations

import math
from typing import Any

from ssdd.artifacts.storage import BudgetError, image_floats


def samples_for_budget(budget: float, image_shape: tuple[int, int, int], target_dim: int,
                       count_targets: bool = True, available: int | None = None) -> int:
    """m such that m images (+ m targets of size target_dim when counted) fit in `budget` image-equivalents.

    Each sample costs 1 + d / (C*H*W) image-equivalents when its target is counted, else 1."""
    per_sample = 1.0 + (target_dim / image_floats(image_shape) if count_targets else 0.0)
    m = math.floor(budget / per_sample + 1e-9)
    if m < 1:
        raise BudgetError(f"a budget of {budget:g} image-equivalents cannot hold one sample "
                          f"(one image{' + its target' if count_targets else ''} costs {per_sample:.3f})")
    if available is not None and m > available:
        raise BudgetError(f"a budget of {budget:g} image-equivalents means {m} samples, but the source has only "
                          f"{available} images")
    return m


def teacher_target_samples(cfg: Any, image_shape: tuple[int, int, int], target_dim: int,
                           available: int | None = None) -> int:
    """The budget rule of a method that stores m images with one teacher target (d floats) each."""
    return samples_for_budget(cfg.budget, image_shape, target_dim, cfg.count_targets, available=available)


def label_samples(cfg: Any, image_shape: tuple[int, int, int], target_dim: int, available: int | None = None) -> int:
    """The budget rule of a method that stores m images with one class label (one value) each."""
    return samples_for_budget(cfg.budget, image_shape, 1, True, available=available)
