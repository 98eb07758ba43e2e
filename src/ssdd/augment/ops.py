"""Batched image augmentations with per-sample randomness, run on whatever device the batch is on.

Every op takes float images (B, 3, H, W) in [0, 1] and an optional torch.Generator, draws all of its
random numbers for the batch in one call, and contains no per-image Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # luma weights of torchvision's tensor ops


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0,1) numbers drawn on the generator's device, moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) luma."""
    r, g, b = x.unbind(dim=1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def random_grayscale(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    mask = _rand((x.shape[0],), generator, x.device) < p
    return _where(mask, grayscale(x).expand_as(x), x)


def random_horizontal_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    return flip_where(x, flip_draws(x.shape[0], p, generator, x.device))


def flip_draws(batch: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """random_horizontal_flip's random part: which of `batch` images it flips (bool, (B,))."""
    return _rand((batch,), generator, device) < p


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """random_horizontal_flip's deterministic part: flip the images where `mask` holds."""
    return _where(mask, x.flip(-1), x)


def random_solarize(x: torch.Tensor, p: float, threshold: float = 0.5,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    mask = _rand((x.shape[0],), generator, x.device) < p
    return _where(mask, torch.where(x >= threshold, 1.0 - x, x), x)


def random_crop(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by `padding` and take an H x W crop at a per-sample random offset (exact pixel copy)."""
    return crop_at(x, padding, crop_draws(x.shape[0], padding, generator, x.device))


def crop_draws(batch: int, padding: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """random_crop's random part: the (row, column) offsets into the padded images, (2, B) long in
    [0, 2 * padding]; no draw at all (zeros) when padding <= 0, as random_crop then draws nothing."""
    if padding <= 0:
        return torch.zeros((2, batch), dtype=torch.long, device=device)
    return (_rand((2, batch), generator, device) * (2 * padding + 1)).long().clamp_max(2 * padding)


def crop_at(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """random_crop's deterministic part: the H x W crops of the zero-padded images at `offsets` (crop_draws)."""
    if padding <= 0:
        return x
    batch, _, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(width, device=x.device)  # (B, W)
    index = torch.arange(batch, device=x.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2).contiguous()


def sample_resized_crop_boxes(batch: int, height: int, width: int, scale: tuple[float, float],
                              ratio: tuple[float, float], generator: torch.Generator | None,
                              device: torch.device, attempts: int = 10) -> torch.Tensor:
    """Per-sample crop boxes (top, left, h, w) in pixels, by torchvision's RandomResizedCrop rule:
    up to `attempts` draws of area fraction and log-uniform aspect ratio, else a centred crop."""
    area = float(height * width)
    u = _rand((3, batch, attempts), generator, device)
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[1])
    w = torch.sqrt(target_area * aspect).round()
    h = torch.sqrt(target_area / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(dim=1), ok.float().argmax(dim=1), torch.full((batch,), -1, device=device))
    pick = first.clamp_min(0)[:, None]
    w_sel = w.gather(1, pick).squeeze(1)
    h_sel = h.gather(1, pick).squeeze(1)
    # fallback: centre crop with the aspect ratio clamped into range (torchvision's rule)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), float(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = float(round(height * ratio[1])), float(height)
    else:
        fw, fh = float(width), float(height)
    failed = first < 0
    w_sel = torch.where(failed, torch.full_like(w_sel, fw), w_sel)
    h_sel = torch.where(failed, torch.full_like(h_sel, fh), h_sel)
    pos = _rand((2, batch), generator, device)
    top = torch.floor(pos[0] * (height - h_sel + 1))
    left = torch.floor(pos[1] * (width - w_sel + 1))
    top = torch.where(failed, torch.floor((height - h_sel) / 2), top)
    left = torch.where(failed, torch.floor((width - w_sel) / 2), left)
    return torch.stack([top, left, h_sel, w_sel], dim=1)


def crop_and_resize(x: torch.Tensor, boxes: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Crop per-sample boxes (top, left, h, w) and resize each to size x size.

    `mode` is bilinear or bicubic (cubic convolution with a = -0.75, as torch's; PIL's bicubic, which
    torchvision uses on PIL images, has a = -0.5). Bicubic output is clamped to the input's [0, 1] range."""
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be bilinear or bicubic, got '{mode}'")
    batch, _, height, width = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(dim=1)
    theta = torch.zeros(batch, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [batch, x.shape[1], size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp(0.0, 1.0) if mode == "bicubic" else out


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator | None = None, mode: str = "bilinear") -> torch.Tensor:
    boxes = sample_resized_crop_boxes(x.shape[0], x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    return crop_and_resize(x, boxes, size, mode)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    safe_max = torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    sat = delta / safe_max
    rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, sat, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(dim=1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    candidates = torch.stack(
        [torch.stack(c, dim=1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], dim=1
    )  # (B, 6, 3, H, W)
    index = i[:, None, None].expand(-1, 1, 3, -1, -1)
    return candidates.gather(1, index).squeeze(1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def _blend(x: torch.Tensor, anchor: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """anchor + factor * (x - anchor), clamped to [0, 1]: contrast and saturation, and brightness (anchor 0)."""
    return (anchor + factor.view(-1, 1, 1, 1) * (x - anchor)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    hue = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1))


# (index that the drawn order lists, adjustment, per-sample factors) of the adjustments with a non-zero strength
_Active = list[tuple[int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]]
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)  # positions in _JITTER_OPS
_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def random_color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                        p: float = 1.0, generator: torch.Generator | None = None,
                        branch_free: bool = False) -> torch.Tensor:
    """torchvision-style ColorJitter applied with probability p per sample; per-sample factors, and
    the order of the four adjustments drawn once per batch (torchvision draws it per image).

    `branch_free` gives the same images from the same draws without reading the drawn order on the host
    (a CUDA synchronisation per call): the drawn adjustments are selected on the device (_jitter_selected),
    at the cost of twice the brightness, contrast and saturation arithmetic (hue, the costly one, runs once)."""
    batch = x.shape[0]
    u = _rand((5, batch), generator, x.device)
    order = torch.argsort(_rand((4,), generator, x.device))
    strengths = [brightness, contrast, saturation, hue]
    factors = [
        1 - brightness + 2 * brightness * u[0],
        1 - contrast + 2 * contrast * u[1],
        1 - saturation + 2 * saturation * u[2],
        -hue + 2 * hue * u[3],
    ]
    # an adjustment of strength 0 is skipped (the identity), as torchvision does
    active: _Active = [(k, op, factor) for k, (op, factor, strength)
              in enumerate(zip(_JITTER_OPS, factors, strengths, strict=True)) if strength > 0]
    jitter = _jitter_selected if branch_free else _jitter_in_order
    return _where(u[4] < p, jitter(x, order, active), x)


def _jitter_in_order(x: torch.Tensor, order: torch.Tensor, active: _Active) -> torch.Tensor:
    """The active adjustments in the drawn order (read on the host)."""
    ops = {k: (op, factor) for k, op, factor in active}
    out = x
    for k in order.tolist():
        if k in ops:
            out = ops[k][0](out, ops[k][1])
    return out


def _jitter_selected(x: torch.Tensor, order: torch.Tensor, active: _Active) -> torch.Tensor:
    """The same as _jitter_in_order with the order kept on the device. Brightness, contrast and saturation are
    each a blend towards an anchor (0, the image's mean grey, the pixel's grey; brightness' x * f is the blend
    towards 0 bit for bit), so one blend per position serves whichever of them was drawn there. Hue, the costly
    one, is computed once: the blends drawn before it (positions 0-2), hue, then those drawn after it (1-3)."""
    blends = {k: factor for k, _, factor in active if k != _HUE}
    hue = [(op, factor) for k, op, factor in active if k == _HUE]
    hue_position = torch.argmax((order == _HUE).long())
    out = x
    for position in range(len(_JITTER_OPS) - 1):
        out = _blend_drawn(out, order[position], blends, position < hue_position)
    for op, factor in hue:
        out = op(out, factor)
    for position in range(1, len(_JITTER_OPS)):
        out = _blend_drawn(out, order[position], blends, position > hue_position)
    return out


def _blend_drawn(x: torch.Tensor, drawn: torch.Tensor, blends: dict[int, torch.Tensor], here: torch.Tensor
                 ) -> torch.Tensor:
    """The blend `drawn` names (brightness, contrast or saturation; its factors in `blends` when active) where
    `here` holds, else x unchanged; `drawn` and `here` are device tensors, never read on the host."""
    if not blends:
        return x
    gray = grayscale(x) if blends.keys() & {_CONTRAST, _SATURATION} else x  # x: not read (brightness alone)
    anchor = torch.zeros((), dtype=x.dtype, device=x.device)  # brightness'
    factor = torch.ones_like(next(iter(blends.values())))
    applies = torch.zeros((), dtype=torch.bool, device=x.device)
    for k, k_factor in blends.items():
        chosen = drawn == k
        if k != _BRIGHTNESS:
            anchor = torch.where(chosen, gray.mean(dim=(1, 2, 3), keepdim=True) if k == _CONTRAST else gray, anchor)
        factor = torch.where(chosen, k_factor, factor)
        applies = applies | chosen
    return torch.where(applies & here, _blend(x, anchor, factor), x)


def rotate90(x: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """Rotate by quarter_turns * 90 degrees counter-clockwise; exact (a pixel permutation)."""
    return torch.rot90(x, k=quarter_turns % 4, dims=(-2, -1))


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel; mean and std are (3,) tensors on x's device."""
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]."""
    return images_uint8.float().div_(255.0)
