"""Boost's predefined augmentations (docs/method.md section 4.2): a fixed, deterministic list of views.

`apply_views` stacks every view of a batch view-major ([a_0(x); a_1(x); ...]); `random_views` gives each
image of a real batch one view drawn at random. Two families:

- pixel permutations (`VIEWS`: identity, rot90/180/270, hflip, vflip, transpose): exact, the same on
  uint8 and float images; rotations and transposition need square images;
- fixed photometric instances, named with their parameter: `brightness_F`, `contrast_F`,
  `saturation_F` (factor F > 0, as torchvision's adjust_*), `hue_S` (shift S in [-0.5, 0.5]) and
  `blur_K_S` (Gaussian blur, odd kernel K >= 3, sigma S > 0, reflect padding, as torchvision's
  gaussian_blur); for example `brightness_1.4`, `hue_-0.1`, `blur_5_1.0`. They work on float images in
  [0, 1] (uint8 input is converted) and give the same result every time.

A plugin (docs/architecture.md, "Plugins") adds a view of its own with `register_view`; it is then named in
`boost.augmentations` like the built-in ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ssdd.augment import to_float
from ssdd.augment.ops import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, rotate90
from ssdd.plugins import ENV, load_plugins

VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "rot90": lambda x: rotate90(x, 1),
    "rot180": lambda x: rotate90(x, 2),
    "rot270": lambda x: rotate90(x, 3),
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "transpose": lambda x: x.transpose(-2, -1),
}
NEEDS_SQUARE = {"rot90", "rot270", "transpose"}
_BUILT_IN = frozenset(VIEWS)  # the permutations above; register_view adds a plugin's
_REGISTERED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}  # register_view's views that are not permutations
_NUMBER = r"([+-]?(?:\d+\.?\d*|\.\d+))"
_PHOTOMETRIC = re.compile(rf"^(brightness|contrast|saturation|hue)_{_NUMBER}$")
_BLUR = re.compile(rf"^blur_(\d+)_{_NUMBER}$")
_ADJUST = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation,
           "hue": adjust_hue}


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (torchvision's gaussian_blur on float tensors)."""
    half = (kernel - 1) / 2
    grid = torch.linspace(-half, half, kernel, dtype=x.dtype, device=x.device)
    weights = torch.exp(-0.5 * (grid / sigma) ** 2)
    weights = weights / weights.sum()
    channels = x.shape[1]
    pad = kernel // 2
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, weights.view(1, 1, 1, kernel).expand(channels, 1, 1, kernel), groups=channels)
    return F.conv2d(out, weights.view(1, 1, kernel, 1).expand(channels, 1, kernel, 1), groups=channels)


def register_view(name: str, fn: Callable[[torch.Tensor], torch.Tensor], *, exact_permutation: bool,
                  needs_square: bool = False) -> None:
    """Add a predefined view: `fn` maps a batch (n, C, H, W) to the same shape, image by image, the same every
    time. exact_permutation: it only moves pixels (it then also acts on uint8 images, which stay exact);
    otherwise it is given float images in [0, 1] and returns images in [0, 1]. needs_square: it is refused for
    images that are not square. A name ssdd already knows (a built-in view, or one of the photometric patterns)
    is refused; a view that breaks these rules is refused, naming it, when a Boost config names it."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        raise ValueError(f"register_view: a view name is a word (letters, digits, _ . -), got {name!r}")
    if name in VIEWS or name in _REGISTERED or _PHOTOMETRIC.match(name) or _BLUR.match(name):
        raise ValueError(f"register_view: the view '{name}' is already defined")
    if not callable(fn):
        raise ValueError(f"register_view: the view '{name}' needs a function of a batch of images, got {fn!r}")
    if exact_permutation:
        VIEWS[name] = fn
    else:
        _REGISTERED[name] = fn
    if needs_square:
        NEEDS_SQUARE.add(name)


def describe_view(name: str) -> dict[str, Any]:
    """The operation and parameters a view name stands for; ValueError for an unknown or invalid name."""
    if name not in VIEWS and name not in _REGISTERED:
        load_plugins()  # a view a plugin registers is known once the plugin is imported
    if name in VIEWS:
        return {"op": name, "exact_permutation": True}
    if name in _REGISTERED:
        return {"op": name, "exact_permutation": False}
    if match := _PHOTOMETRIC.match(name):
        op, value = match.group(1), float(match.group(2))
        if op == "hue" and not -0.5 <= value <= 0.5:
            raise ValueError(f"view '{name}': the hue shift must lie in [-0.5, 0.5]")
        if op != "hue" and value <= 0:
            raise ValueError(f"view '{name}': the {op} factor must be positive")
        return {"op": op, "shift" if op == "hue" else "factor": value, "exact_permutation": False}
    if match := _BLUR.match(name):
        kernel, sigma = int(match.group(1)), float(match.group(2))
        if kernel < 3 or kernel % 2 == 0 or sigma <= 0:
            raise ValueError(f"view '{name}': blur needs an odd kernel >= 3 and a positive sigma")
        return {"op": "gaussian_blur", "kernel": kernel, "sigma": sigma, "exact_permutation": False}
    raise ValueError(f"unknown augmentation '{name}'; choose from {sorted(VIEWS) + sorted(_REGISTERED)} or "
                     f"brightness_F, contrast_F, saturation_F, hue_S, blur_K_S (for example brightness_1.4, "
                     f"blur_5_1.0), or a view a plugin registers ({ENV})")


def view_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function of a view name (see the module docstring)."""
    info = describe_view(name)
    if info["exact_permutation"]:
        return VIEWS[name]
    if name in _REGISTERED:
        registered = _REGISTERED[name]
        return lambda x: registered(_as_float(x))
    if info["op"] == "gaussian_blur":
        return lambda x: gaussian_blur(_as_float(x), info["kernel"], info["sigma"])
    adjust, value = _ADJUST[info["op"]], info.get("factor", info.get("shift"))
    return lambda x: adjust(_as_float(x), torch.full((x.shape[0],), value, dtype=torch.float32, device=x.device))


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return to_float(x) if x.dtype == torch.uint8 else x


def encode_view(teacher: Any, images_u8: torch.Tensor, name: str, batch_size: int = 1024) -> torch.Tensor:
    """Teacher representations g(a(x)) of uint8 images under view `name` (photometric views in float)."""
    if name in VIEWS:
        return teacher.encode(VIEWS[name](images_u8))
    fn = view_fn(name)
    with torch.no_grad():
        return torch.cat([teacher(fn(images_u8[i:i + batch_size])).float()
                          for i in range(0, images_u8.shape[0], batch_size)])


def check_views(names: Sequence[str], image_shape: tuple[int, ...] | None = None) -> list[str]:
    """Validate a view list: known names, no repeats, identity first (a_0)."""
    names = list(names)
    for name in names:
        describe_view(name)
    if not names or names[0] != "identity":
        raise ValueError(f"the augmentation list must start with 'identity' (a_0), got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"the augmentation list repeats a view: {names}")
    if image_shape is not None and image_shape[-1] != image_shape[-2] and NEEDS_SQUARE & set(names):
        raise ValueError(f"{sorted(NEEDS_SQUARE & set(names))} need square images, got {tuple(image_shape)}")
    if image_shape is not None:
        for name in names:
            if name in _REGISTERED or (name in VIEWS and name not in _BUILT_IN):
                _try_view(name, tuple(image_shape))
    return names


def _try_view(name: str, image_shape: tuple[int, ...]) -> None:
    """A plugin's view on a small batch, before any work: the same shape back, and for a view that is not a
    permutation, images in [0, 1] (ValueError naming it otherwise)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, *image_shape[-3:], generator=generator)
    exact = name in VIEWS
    probe = (x * 255).round().to(torch.uint8) if exact else x
    out = view_fn(name)(probe)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(probe.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"view '{name}' (a plugin's) must return images of the shape it is given: "
                         f"{tuple(probe.shape)} in, {got} out")
    if exact and out.dtype != torch.uint8:
        raise ValueError(f"view '{name}' is registered as a permutation, but it turns uint8 images into {out.dtype}")
    if not exact and not (torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1):
        raise ValueError(f"view '{name}' (a plugin's) must return images in [0, 1], gave values in "
                         f"[{float(out.min()):.3g}, {float(out.max()):.3g}]")


def apply_views(x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """(n, C, H, W) -> (n * len(names), C, H, W), view-major."""
    return torch.cat([view_fn(name)(x) for name in names])


def random_views(x: torch.Tensor, names: Sequence[str], generator: torch.Generator | None = None,
                 sync_free: bool = False) -> torch.Tensor:
    """One view per image, drawn uniformly from `names` (generator on x's device); see views_at for sync_free."""
    return views_at(x, names, view_draws(x.shape[0], names, generator, x.device), sync_free)


def view_draws(batch: int, names: Sequence[str], generator: torch.Generator | None, device: torch.device
               ) -> torch.Tensor:
    """random_views' random part: the index into `names` of each image's view, (B,) long; no draw (zeros) for a
    single view, as random_views then draws nothing."""
    if len(names) == 1:
        return torch.zeros(batch, dtype=torch.long, device=device)
    return torch.randint(0, len(names), (batch,), generator=generator, device=device)


def views_at(x: torch.Tensor, names: Sequence[str], choice: torch.Tensor, sync_free: bool = False) -> torch.Tensor:
    """random_views' deterministic part: image i under view names[choice[i]]. sync_free: every view is computed
    on the whole batch and selected with torch.where (no host synchronisation to ask whether a view was drawn,
    the same values: every view acts on each image alone); otherwise only the images that drew a view."""
    if len(names) == 1:
        return view_fn(names[0])(x)
    if x.dtype == torch.uint8 and not all(name in VIEWS for name in names):
        x = to_float(x)  # photometric views give float images
    if sync_free:
        out = x
        for k, name in enumerate(names[1:], start=1):
            out = torch.where((choice == k).view(-1, 1, 1, 1), view_fn(name)(x), out)
        return out
    out = x.clone()
    for k, name in enumerate(names):
        mask = choice == k
        if k and bool(mask.any()):
            out[mask] = view_fn(name)(x[mask])
    return out
