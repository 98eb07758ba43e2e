"""Augmentation pipelines built from the batched ops: Barlow Twins views and crop + flip."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssdd.augment import ops


@dataclass
class ViewConfig:
    """One Barlow Twins view (docs/method.md section 2). Both views share everything but solarisation."""

    crop_scale_min: float = 0.08
    crop_scale_max: float = 1.0
    jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.2, 0.1])  # brightness contrast sat hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    solarize_p: float = 0.0
    flip_p: float = 0.5
    interpolation: str = "bicubic"  # of the resized crop: bicubic (solo-learn's) or bilinear


@dataclass
class TwoViewConfig:
    view1: ViewConfig = field(default_factory=ViewConfig)
    view2: ViewConfig = field(default_factory=lambda: ViewConfig(solarize_p=0.2))


def ssl_view(x: torch.Tensor, cfg: ViewConfig, generator: torch.Generator | None = None,
             branch_free: bool = False) -> torch.Tensor:
    """RandomResizedCrop -> ColorJitter(p) -> Grayscale(p) -> Solarize(p) -> HorizontalFlip(p), as solo-learn.
    `branch_free`: the same view without reading a drawn number on the host (ops.random_color_jitter)."""
    if len(cfg.jitter) != 4:
        raise ValueError(f"jitter must list 4 strengths (brightness, contrast, saturation, hue), got {cfg.jitter}")
    out = ops.random_resized_crop(x, x.shape[-1], (cfg.crop_scale_min, cfg.crop_scale_max), generator=generator,
                                  mode=cfg.interpolation)
    out = ops.random_color_jitter(out, *cfg.jitter, p=cfg.jitter_p, generator=generator,
                                  branch_free=branch_free)
    out = ops.random_grayscale(out, cfg.grayscale_p, generator=generator)
    out = ops.random_solarize(out, cfg.solarize_p, generator=generator)
    return ops.random_horizontal_flip(out, cfg.flip_p, generator=generator)


def two_views(x: torch.Tensor, cfg: TwoViewConfig, generator: torch.Generator | None = None,
              branch_free: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return ssl_view(x, cfg.view1, generator, branch_free), ssl_view(x, cfg.view2, generator, branch_free)


def crop_flip(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomCrop(padding) + horizontal flip: the real-batch augmentation of KRR-ST and fine-tuning."""
    offsets, flips = crop_flip_draws(x.shape[0], padding, generator, x.device)
    return crop_flip_at(x, padding, offsets, flips)


def crop_flip_draws(batch: int, padding: int, generator: torch.Generator | None, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """crop_flip's random part, the same generator calls in the same order: crop offsets (2, B), flips (B,)."""
    offsets = ops.crop_draws(batch, padding, generator, device)
    return offsets, ops.flip_draws(batch, 0.5, generator, device)


def crop_flip_at(x: torch.Tensor, padding: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """crop_flip's deterministic part: crop at `offsets`, then flip where `flips` holds (crop_flip_draws)."""
    return ops.flip_where(ops.crop_at(x, padding, offsets), flips)
