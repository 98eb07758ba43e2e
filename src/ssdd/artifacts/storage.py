"""The storage accountant: what a distilled set costs, in image-equivalents and in bytes.

Every float that must be stored to rebuild a distilled set counts (images or their bases and
coefficients, representations or theirs, means, approximation-network weights); the total divided by
C*H*W of one source image is its size in image-equivalents (docs/method.md section 1). Every method, the
evaluation and the tests use this one function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ssdd.config import is_count


class BudgetError(ValueError):
    """A distilled set whose stored tensors exceed the storage budget, or a budget nothing fits in."""


@dataclass(frozen=True)
class TensorStorage:
    name: str
    shape: tuple[int, ...]
    dtype: str
    floats: int  # number of stored values
    bytes: int  # bytes of those values at the stored dtype
    image_equivalents: float


@dataclass(frozen=True)
class StorageReport:
    image_shape: tuple[int, int, int]  # (C, H, W) of one source image
    tensors: tuple[TensorStorage, ...]

    @property
    def floats(self) -> int:
        return sum(t.floats for t in self.tensors)

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tensors)

    @property
    def image_equivalents(self) -> float:
        return self.floats / image_floats(self.image_shape)

    def as_dict(self) -> dict[str, Any]:
        return {
            "image_equivalents": self.image_equivalents,
            "floats": self.floats,
            "bytes": self.bytes,
            "image_shape": list(self.image_shape),
            "tensors": {t.name: {"shape": list(t.shape), "dtype": t.dtype, "floats": t.floats, "bytes": t.bytes,
                                 "image_equivalents": t.image_equivalents} for t in self.tensors},
        }


def image_floats(image_shape: tuple[int, int, int]) -> int:
    """Values in one image of `image_shape` (C, H, W): the unit of every budget; a ValueError unless each is >= 1."""
    if len(image_shape) != 3 or not all(is_count(n) for n in image_shape):
        raise ValueError(f"an image shape is (channels, height, width), each a whole number >= 1; got "
                         f"{tuple(image_shape)}")
    channels, height, width = image_shape
    return channels * height * width


def storage_of(stored: Mapping[str, torch.Tensor], image_shape: tuple[int, int, int]) -> StorageReport:
    """Account for every stored tensor (the dict a distilled artifact writes to disk)."""
    per_image = image_floats(image_shape)
    rows = []
    for name, tensor in stored.items():
        count = tensor.numel()
        rows.append(TensorStorage(name, tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""), count,
                                  count * tensor.element_size(), count / per_image))
    return StorageReport(tuple(image_shape), tuple(rows))  # type: ignore[arg-type]


def check_budget(report: StorageReport, budget: float) -> None:
    """Fail when the stored tensors exceed `budget` image-equivalents, saying by how much."""
    if report.image_equivalents > budget + 1e-9:
        over = report.image_equivalents - budget
        split = ", ".join(f"{t.name} {t.image_equivalents:.2f}" for t in report.tensors)
        raise BudgetError(f"stored tensors need {report.image_equivalents:.2f} image-equivalents, "
                          f"{over:.2f} over the budget of {budget:g} ({split})")
