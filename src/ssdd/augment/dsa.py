"""Differentiable Siamese Augmentation (DSA, Zhao & Bilen 2021) as KRR-ST pre-trains labelled subsets with it.

The strategy is `color_crop_cutout_flip_scale_rotate` in its single mode: every batch gets ONE of the six
operations, chosen uniformly, and that operation draws its random parameters per image. The operations
act on normalised images (values are not clamped) and need no gradient. All random numbers come from the
given torch.Generator (drawn on its device), so a run is reproducible; no op loops over images in Python.

Per-op semantics (DSA's defaults in `DSAParams`):
- color: brightness x + (u - 0.5) * brightness, then saturation (x - m_c) * (u * saturation) + m_c with m_c
  the mean over channels at each pixel, then contrast (x - m) * (u + contrast) + m with m the image mean;
  each factor has its own u ~ U[0, 1) per image.
- crop: an integer translation by (dy, dx), each uniform in [-s, s] with s = int(size * crop_pad + 0.5),
  out[i, j] = x[i + dy, j + dx], zero where that falls outside the image.
- cutout: a zero rectangle of int(size * cutout + 0.5) pixels a side, centred (size // 2 before the centre)
  at a uniform position in [0, size] ([0, size - 1] for an odd side), cut at the border.
- flip: a horizontal flip with probability `flip`.
- scale: affine grid diag(sx, sy), sx and sy ~ U[1 / scale, scale]; rotate: angle ~ U[-rotate, rotate]
  degrees, matrix [[cos, -sin], [sin, cos]]; both sampled bilinearly with align_corners=True, zeros outside.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["DSA_OPS", "DSAParams", "dsa"]


@dataclass(frozen=True)
class DSAParams:
    flip: float = 0.5  # probability of a horizontal flip
    scale: float = 1.2  # sx, sy ~ U[1/scale, scale]
    rotate: float = 15.0  # degrees, angle ~ U[-rotate, rotate]
    crop_pad: float = 0.125  # largest translation, as a fraction of the side
    cutout: float = 0.5  # side of the zeroed square, as a fraction of the side
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


# ----------------------------------------------------------------------------- random numbers
def _uniform(batch: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """(batch,) numbers in [0, 1) from the generator, on like's device and dtype."""
    return torch.rand(batch, generator=generator, device=generator.device).to(like.device, like.dtype)


def _integers(low: int, high: int, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(batch,) integers in [low, high) from the generator, on `device`."""
    return torch.randint(low, high, (batch,), generator=generator, device=generator.device).to(device)


# ----------------------------------------------------------------------------- deterministic parts
def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, i + dy[b], j + dx[b]], 0 where that pixel is outside the image."""
    batch, _, height, width = x.shape
    rows = torch.arange(height, device=x.device) + dy.view(-1, 1)  # (B, H)
    cols = torch.arange(width, device=x.device) + dx.view(-1, 1)  # (B, W)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    index = torch.arange(batch, device=x.device).view(-1, 1, 1)
    picked = x.permute(0, 2, 3, 1)[index, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]]
    return picked.permute(0, 3, 1, 2) * inside[:, None].to(x.dtype)


def cutout_mask(centre_y: torch.Tensor, centre_x: torch.Tensor, size: tuple[int, int],
                shape: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) mask: 0 on rows centre_y - size[0] // 2 ... + size[0] - 1 (same for columns), else 1."""
    height, width = shape
    top = (centre_y - size[0] // 2).view(-1, 1)
    left = (centre_x - size[1] // 2).view(-1, 1)
    rows = torch.arange(height, device=centre_y.device)
    cols = torch.arange(width, device=centre_x.device)
    in_rows = (rows >= top) & (rows < top + size[0])  # (B, H)
    in_cols = (cols >= left) & (cols < left + size[1])  # (B, W)
    return ~(in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample x through per-image (B, 2, 2) matrices (no translation): bilinear, zeros outside, corners aligned."""
    theta = torch.cat([matrix, matrix.new_zeros(matrix.shape[0], 2, 1)], dim=2).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(B,) angles in radians -> (B, 2, 2) [[cos, -sin], [sin, cos]]."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- the six operations
def dsa_color(x: torch.Tensor, generator: torch.Generator, params: DSAParams) -> torch.Tensor:
    """Brightness, then saturation, then contrast, each with its own per-image factor."""
    batch = x.shape[0]
    x = x + _per_image(_uniform(batch, generator, x) - 0.5) * params.brightness
    pixel_mean = x.mean(dim=1, keepdim=True)
    x = (x - pixel_mean) * _per_image(_uniform(batch, generator, x) * params.saturation) + pixel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * _per_image(_uniform(batch, generator, x) + params.contrast) + image_mean


def dsa_crop(x: torch.Tensor, generator: torch.Generator, params: DSAParams) -> torch.Tensor:
    shift_y, shift_x = int(x.shape[2] * params.crop_pad + 0.5), int(x.shape[3] * params.crop_pad + 0.5)
    dy = _integers(-shift_y, shift_y + 1, x.shape[0], generator, x.device)
    dx = _integers(-shift_x, shift_x + 1, x.shape[0], generator, x.device)
    return translate(x, dy, dx)


def dsa_cutout(x: torch.Tensor, generator: torch.Generator, params: DSAParams) -> torch.Tensor:
    height, width = x.shape[2], x.shape[3]
    size = int(height * params.cutout + 0.5), int(width * params.cutout + 0.5)
    # an even side may centre on any of size + 1 positions, an odd one on the size pixels
    centre_y = _integers(0, height + 1 - size[0] % 2, x.shape[0], generator, x.device)
    centre_x = _integers(0, width + 1 - size[1] % 2, x.shape[0], generator, x.device)
    return x * cutout_mask(centre_y, centre_x, size, (height, width)).to(x.dtype)


def dsa_flip(x: torch.Tensor, generator: torch.Generator, params: DSAParams) -> torch.Tensor:
    flipped = _uniform(x.shape[0], generator, x) < params.flip
    return torch.where(_per_image(flipped), x.flip(3), x)


def dsa_scale(x: torch.Tensor, generator: torch.Generator, params: DSAParams) -> torch.Tensor:
    low, high = 1.0 / params.scale, params.scale
    sx = _uniform(x.shape[0], generator, x) * (high - low) + low
    sy = _uniform(x.shape[0], generator, x) * (high - low) + low
    return affine(x, torch.diag_embed(torch.stack([sx, sy], dim=1)))


def dsa_rotate(x: torch.Tensor, generator: torch.Generator, params: DSAParams) -> torch.Tensor:
    angles = (_uniform(x.shape[0], generator, x) - 0.5) * 2 * math.radians(params.rotate)
    return affine(x, rotation_matrices(angles))


DSA_OPS: dict[str, Callable[[torch.Tensor, torch.Generator, DSAParams], torch.Tensor]] = {
    "color": dsa_color, "crop": dsa_crop, "cutout": dsa_cutout,
    "flip": dsa_flip, "scale": dsa_scale, "rotate": dsa_rotate,
}


@torch.no_grad()
def dsa(x: torch.Tensor, generator: torch.Generator, params: DSAParams = DSAParams()) -> torch.Tensor:
    """One DSA operation, chosen uniformly for the whole batch, with per-image parameters.
    x: (B, C, H, W) normalised float images; returns a new tensor of the same shape."""
    names = list(DSA_OPS)
    pick = int(torch.randint(0, len(names), (1,), generator=generator, device=generator.device))
    return DSA_OPS[names[pick]](x, generator, params).contiguous()
