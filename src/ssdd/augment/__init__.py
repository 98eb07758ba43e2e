"""Batched, device-side augmentations with per-sample randomness."""

from ssdd.augment.ops import normalize, rotate90, to_float
from ssdd.augment.pipelines import TwoViewConfig, ViewConfig, crop_flip, ssl_view, two_views

__all__ = ["TwoViewConfig", "ViewConfig", "crop_flip", "normalize", "rotate90", "ssl_view", "to_float", "two_views"]
