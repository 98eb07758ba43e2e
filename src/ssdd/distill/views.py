"""Boost's predefined augmentations (docs/method.md section 4.2): a fixed, deterministic list of views.

`apply_views` stacks every view of a batch view-major ([a_0(x); a_1(x); ...]); `random_views` gives each
image of a real batch one view drawn at random. All views are pixel permutations, so they are exact
(and the same on uint8 and float images); rotations and transposition need square images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ssdd.augment import rotate90

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


def check_views(names: Sequence[str], image_shape: tuple[int, ...] | None = None) -> list[str]:
    """Validate a view list: known names, no repeats, identity first (a_0)."""
    names = list(names)
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from {sorted(VIEWS)}")
    if not names or names[0] != "identity":
        raise ValueError(f"the augmentation list must start with 'identity' (a_0), got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"the augmentation list repeats a view: {names}")
    if image_shape is not None and image_shape[-1] != image_shape[-2] and NEEDS_SQUARE & set(names):
        raise ValueError(f"{sorted(NEEDS_SQUARE & set(names))} need square images, got {tuple(image_shape)}")
    return names


def apply_views(x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """(n, C, H, W) -> (n * len(names), C, H, W), view-major."""
    return torch.cat([VIEWS[name](x) for name in names])


def random_views(x: torch.Tensor, names: Sequence[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """One view per image, drawn uniformly from `names` (generator on x's device)."""
    if len(names) == 1:
        return VIEWS[names[0]](x)
    choice = torch.randint(0, len(names), (x.shape[0],), generator=generator, device=x.device)
    out = x.clone()
    for k, name in enumerate(names):
        mask = choice == k
        if k and bool(mask.any()):
            out[mask] = VIEWS[name](x[mask])
    return out
