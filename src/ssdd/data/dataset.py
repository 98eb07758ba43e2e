"""The one in-memory dataset type every stage uses: uint8 images, int64 labels (or none), class names, split."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ssdd.config import is_count
from ssdd.run.progress import bar
from ssdd.run.runtime import tensor_fingerprint


class DataError(ValueError):
    """Bad input data: the message names the file or dataset and the problem, on one line."""


@dataclass(frozen=True)
class ImageDataset:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor | None  # (N,) int64 in [0, len(classes)); None: unlabelled images (no classes)
    classes: tuple[str, ...]
    split: str
    name: str

    def __post_init__(self) -> None:
        check_arrays(self.images, self.labels, len(self.classes), where=f"{self.name}[{self.split}]")

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def require_labels(self, needed_by: str) -> torch.Tensor:
        """The labels; DataError in one line naming what needs them when the split has none."""
        if self.labels is None:
            raise DataError(f"{self.name}[{self.split}]: has no labels, and {needed_by} needs them (an .npz with "
                            f"y_{self.split}, or an image folder with class folders)")
        return self.labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def fingerprint(self) -> str:
        return tensor_fingerprint(self.images, *([] if self.labels is None else [self.labels]))

    def to(self, device: torch.device | str) -> ImageDataset:
        labels = None if self.labels is None else self.labels.to(device)
        return ImageDataset(self.images.to(device), labels, self.classes, self.split, self.name)

    def subset(self, count: int, seed: int) -> ImageDataset:
        """A random subset of `count` images (all of them when count <= 0 or >= len)."""
        if count <= 0 or count >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(self), generator=generator)[:count].sort().values
        labels = None if self.labels is None else self.labels[keep]
        return ImageDataset(self.images[keep], labels, self.classes, self.split, self.name)


def check_arrays(images: torch.Tensor, labels: torch.Tensor | None, num_classes: int, where: str) -> None:
    """Raise DataError unless images are (N,3,H,W) uint8 and labels (N,) int64 within range, or None (unlabelled
    images, with no class names)."""
    for what, value in (("images", images), ("labels", labels)):
        if what == "labels" and value is None:
            if num_classes:
                raise DataError(f"{where}: {num_classes} class names but no labels")
            continue
        if not isinstance(value, torch.Tensor):
            raise DataError(f"{where}: {what} must be a torch tensor, got {type(value).__module__}."
                            f"{type(value).__name__} (torch.from_numpy; NumPy (N, H, W, 3) images go through "
                            f"ssdd.data.save_npz and load_npz)")
    if images.dtype != torch.uint8:
        raise DataError(f"{where}: images must be uint8 pixels in [0, 255], got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataError(f"{where}: images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise DataError(f"{where}: the split is empty")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise DataError(f"{where}: the images are {images.shape[2]}x{images.shape[3]} pixels; every image needs at "
                        f"least one pixel")
    if labels is None:
        return
    if labels.dtype != torch.int64 or labels.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D int64 array, got {labels.dtype} {tuple(labels.shape)}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if num_classes <= 0:
        raise DataError(f"{where}: no class names")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DataError(f"{where}: labels are class indices from 0, found {low}")
    if high >= num_classes:
        raise DataError(f"{where}: labels must lie in [0, {num_classes - 1}], found values in [{low}, {high}]")


def check_label_array(shape: tuple[int, ...], dtype: np.dtype, images: int, where: str) -> None:
    """A NumPy label array for `images` images: integers, one per image ((N,) or (N, 1)); DataError naming
    `where` and the usual way out (class names, one-hot rows)."""
    if not np.issubdtype(dtype, np.integer):
        hint = (" (class names: names, y = np.unique(y, return_inverse=True) gives integer labels and the names "
                "for `classes`)" if dtype.kind in "USO" else "")
        raise DataError(f"{where}: labels must be integers, got dtype {dtype}{hint}")
    if len(shape) == 2 and shape[1] > 1:
        raise DataError(f"{where}: labels must have shape (N,), got {shape} (one-hot rows: y.argmax(1))")
    if math.prod(shape) != images:
        raise DataError(f"{where}: {images} images but {math.prod(shape)} labels")


def check_no_empty_class(dataset: ImageDataset, where: str = "") -> None:
    """The training split must hold at least one image of every class (unlabelled images: nothing to check)."""
    if dataset.labels is None:
        return
    counts = torch.bincount(dataset.labels.cpu(), minlength=dataset.num_classes)
    empty = [dataset.classes[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
    if empty:
        shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
        where = where or f"{dataset.name}[{dataset.split}]"
        raise DataError(f"{where}: {len(empty)} class(es) have no image: {shown}")


def to_nchw_uint8(array: np.ndarray, where: str) -> torch.Tensor:
    """Accept (N,H,W,3), (N,H,W,1), (N,H,W) or (N,3,H,W) uint8 arrays; return (N,3,H,W)."""
    if array.dtype != np.uint8:
        hint = " (float images in [0, 1]: np.round(x * 255).astype(np.uint8))" if array.dtype.kind == "f" else ""
        raise DataError(f"{where}: images must be uint8 pixels in [0, 255], got dtype {array.dtype}{hint}")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise DataError(f"{where}: images must have shape (N, H, W, 3), got {array.shape}")
    if array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif array.shape[1] not in (1, 3):
        raise DataError(f"{where}: images must have 1 or 3 channels, got shape {array.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1).contiguous()
    return tensor


def resize_uint8(images: torch.Tensor, resolution: int, chunk: int = 4096) -> torch.Tensor:
    """Resize (N,3,H,W) uint8 images to resolution x resolution (bilinear, antialiased)."""
    if not is_count(resolution):
        raise DataError(f"resolution must be a whole number of pixels, at least 1; got {resolution!r}")
    resolution = int(resolution)  # a NumPy integer too
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = torch.empty((images.shape[0], 3, resolution, resolution), dtype=torch.uint8)
    for start in bar(range(0, images.shape[0], chunk), desc=f"resizing {images.shape[0]:,} images to {resolution} px",
                     unit="chunk"):
        batch = images[start : start + chunk].float()
        resized = F.interpolate(batch, size=(resolution, resolution), mode="bilinear", antialias=True,
                                align_corners=False)
        out[start : start + chunk] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def pil_to_uint8(image: object, resolution: int) -> torch.Tensor:
    """A PIL image -> (3, R, R) uint8, resized by `resize_uint8` like every other source."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)  # type: ignore[attr-defined]
    tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0)
    return resize_uint8(tensor, resolution)[0]


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0,1] units (the normalisation statistics)."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        batch = images[start : start + chunk].to(torch.float64) / 255.0
        total += batch.sum(dim=(0, 2, 3))
        total_sq += (batch**2).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()
