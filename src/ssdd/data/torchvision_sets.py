"""torchvision datasets by name, converted to ImageDataset; downloads happen only with download=True."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssdd.data.dataset import DataError, ImageDataset, pil_to_uint8, resize_uint8, to_nchw_uint8


@dataclass(frozen=True)
class TorchvisionSpec:
    class_name: str
    split_kwargs: dict[str, dict[str, Any]]  # our split name -> constructor kwargs


def _split(**by_name: str) -> dict[str, dict[str, Any]]:
    return {ours: {"split": theirs} for ours, theirs in by_name.items()}


TORCHVISION_DATASETS: dict[str, TorchvisionSpec] = {
    "cifar10": TorchvisionSpec("CIFAR10", {"train": {"train": True}, "test": {"train": False}}),
    "cifar100": TorchvisionSpec("CIFAR100", {"train": {"train": True}, "test": {"train": False}}),
    "flowers102": TorchvisionSpec("Flowers102", _split(train="train", val="val", test="test")),
    "stanford_cars": TorchvisionSpec("StanfordCars", _split(train="train", test="test")),
    "fgvc_aircraft": TorchvisionSpec("FGVCAircraft", _split(train="trainval", val="val", test="test")),
    "oxford_pets": TorchvisionSpec("OxfordIIITPet", _split(train="trainval", test="test")),
    "dtd": TorchvisionSpec("DTD", _split(train="train", val="val", test="test")),
    "stl10": TorchvisionSpec("STL10", _split(train="train", test="test")),  # 'unlabeled' has no labels
    "svhn": TorchvisionSpec("SVHN", _split(train="train", test="test")),
}


def _class_names(dataset: Any, labels: np.ndarray) -> tuple[str, ...]:
    names = getattr(dataset, "classes", None)
    if names:
        return tuple(str(n) for n in names)
    return tuple(str(i) for i in range(int(labels.max()) + 1))


def _fast_arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Datasets that keep every image in one array (CIFAR, STL-10, SVHN) skip the per-image loop."""
    data = getattr(dataset, "data", None)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        return None
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    return data, np.asarray(labels, dtype=np.int64)


def _slow_arrays(dataset: Any, resolution: int, describe: Callable[[int], str]) -> tuple[torch.Tensor, np.ndarray]:
    images = torch.empty((len(dataset), 3, resolution, resolution), dtype=torch.uint8)
    labels = np.empty(len(dataset), dtype=np.int64)
    for i in range(len(dataset)):
        try:
            img, label = dataset[i]
        except OSError as exc:
            raise DataError(f"{describe(i)}: corrupt or unreadable image ({exc})") from None
        images[i] = pil_to_uint8(img, resolution)
        labels[i] = int(label)
    return images, labels


def load_torchvision(name: str, root: str | Path, split: str, resolution: int, download: bool) -> ImageDataset:
    import torchvision.datasets as tvd

    key = name.lower().replace("-", "_")
    if key not in TORCHVISION_DATASETS:
        raise DataError(f"unknown torchvision dataset '{name}' (available: {', '.join(TORCHVISION_DATASETS)})")
    spec = TORCHVISION_DATASETS[key]
    if split not in spec.split_kwargs:
        raise DataError(f"{name}: split '{split}' does not exist (available: {', '.join(spec.split_kwargs)})")
    cls = getattr(tvd, spec.class_name)
    try:
        dataset = cls(root=str(root), download=download, **spec.split_kwargs[split])
    except RuntimeError as exc:  # torchvision raises RuntimeError for missing or corrupt files
        hint = "" if download else " (pass data.download=true to download it)"
        raise DataError(f"{name} in {root}: {str(exc).splitlines()[0]}{hint}") from None
    fast = _fast_arrays(dataset)
    if fast is not None:
        x, y = fast
        images = to_nchw_uint8(x, f"{name}[{split}]")
        images = resize_uint8(images, resolution)
    else:
        images, y = _slow_arrays(dataset, resolution, lambda i: f"{name}[{split}] image {i} in {root}")
    labels = torch.from_numpy(y)
    return ImageDataset(images, labels, _class_names(dataset, y), split, key)
