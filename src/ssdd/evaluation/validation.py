"""The validation split of `ssdd evaluate` (docs/protocol.md, "Validation split"): a seeded, class-stratified
part of a target's train split, held out so that choices (learning rates, lengths, views, bases) are made
without reading the test split. One function carves it; `check_validation` refuses bad settings before work."""

from __future__ import annotations

import torch

from ssdd.data import ImageDataset

EVAL_SPLIT_TEST = "test"
EVAL_SPLIT_VALIDATION = "validation"


def check_validation(fraction: float, seed: int) -> None:
    """`validation.fraction` in [0, 1) and `validation.seed` a whole number; ValueError in one line otherwise."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"validation.fraction={fraction!r}: the share of each target's train split held out for "
                         "validation, in [0, 1) (0 = score the test split)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"validation.seed={seed!r}: a whole number >= 0")


def carve_validation(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rest, validation): sorted indices into a train split with these `labels`, disjoint, together every index.

    Class by class, a permutation drawn from `seed` alone gives round(fraction x the class's count) images to
    validation, at least one from every class of two or more images and never a class's last one: the same
    labels, fraction and seed always carve the same split, every class keeps training images, and the held-out
    part has the class proportions of the split."""
    check_validation(fraction, seed)
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    held: list[torch.Tensor] = []
    for label in torch.unique(labels).tolist():  # ascending: the draws do not depend on the images' order
        members = torch.nonzero(labels == label).flatten()
        order = members[torch.randperm(members.numel(), generator=generator)]
        count = min(members.numel() - 1, max(1, round(fraction * members.numel()))) if fraction > 0 else 0
        held.append(order[:count])
    validation = torch.cat(held).sort().values if held else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[validation] = False
    return torch.nonzero(keep).flatten(), validation


def split_train(train: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """(rest, validation) of a train split (carve_validation); ValueError when nothing can be held out."""
    rest, held = carve_validation(train.labels, fraction, seed)
    if held.numel() == 0:
        raise ValueError(f"validation.fraction={fraction}: {train.name}'s train split has no class with two images "
                         "or more, so no image can be held out for validation")
    return (ImageDataset(train.images[rest], train.labels[rest], train.classes, train.split, train.name),
            ImageDataset(train.images[held], train.labels[held], train.classes, EVAL_SPLIT_VALIDATION, train.name))
