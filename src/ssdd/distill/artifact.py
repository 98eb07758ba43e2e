"""The distilled-set artifact: the stored tensors (safetensors) + manifest, and loading them back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssdd.artifacts.files import MANIFEST, ArtifactError, load_tensors, read_manifest, save_tensors, write_manifest
from ssdd.artifacts.storage import StorageReport, check_budget, storage_of
from ssdd.distill.registry import get_method
from ssdd.distill.verify import sample_rows, verify_distilled

KIND = "ssdd.distilled"
FORMAT_VERSION = 1


@dataclass
class DistilledSet:
    method: str
    stored: dict[str, torch.Tensor]
    manifest: dict[str, Any]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["image_shape"])  # type: ignore[return-value]

    def storage(self) -> StorageReport:
        return storage_of(self.stored, self.image_shape)

    def training_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stored view as (float images (M,3,H,W) on the [0, 1] pixel scale, targets (M,d)); learned images
        are not clipped, so they may stray outside it (the committed sets: to [-0.55, 1.51]). Supervised sets give
        labels (M,)."""
        images, targets = get_method(self.method).reconstruct(self.stored, self.manifest)
        _check_pairs(self.method, images, targets)
        return images, targets


# learned images stray outside [0, 1] (the 35 committed sets: down to -0.55 and up to 1.51), and a distillation
# stops only once they pass 10 times their starting scale (100 for MKDT's); beyond these bounds a method's
# reconstruct returned another scale (0 to 255 pixels)
PIXEL_SCALE = (-100.0, 101.0)


def _check_pairs(method: str, images: torch.Tensor, targets: torch.Tensor) -> None:
    """A method's rebuilt pairs are what the evaluation trains on: float images on the [0, 1] pixel scale, one
    target (or label) per image; a plugin's reconstruct that returns anything else is named in one line."""
    where = f"method {method}'s reconstruct"
    if images.numel() == 0:
        raise ValueError(f"{where} returned no images")
    if not images.is_floating_point() or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{where} returned images of {images.dtype} {tuple(images.shape)}; it must return float "
                         f"(M, 3, H, W) images on the [0, 1] pixel scale")
    low, high = (float(v) for v in torch.aminmax(images))
    if low < PIXEL_SCALE[0] or high > PIXEL_SCALE[1]:
        raise ValueError(f"{where} returned images in [{low:.3g}, {high:.3g}]; it must return them on the [0, 1] "
                         f"pixel scale (0 to 255 pixels: divide by 255; an imported set: check its --mean and --std, "
                         f"in [0, 1] pixel units)")
    if targets.shape[0] != images.shape[0]:
        raise ValueError(f"{where} returned {images.shape[0]} images but {targets.shape[0]} targets")


def budget_report(stored: dict[str, torch.Tensor], image_shape: tuple[int, int, int], budget: float,
                  count_targets: bool) -> StorageReport:
    """Check the budget on what counts (all stored tensors, or images only under the paper convention)."""
    report = storage_of(stored, image_shape)
    counted = stored if count_targets else {k: v for k, v in stored.items() if k != "targets"}
    check_budget(storage_of(counted, image_shape), budget)
    return report


def _fill_m(manifest: dict[str, Any], stored: dict[str, torch.Tensor]) -> None:
    """m from the tensors where the manifest does not say it: a method (a plugin's) need not report how many
    samples it made."""
    if manifest.get("m") is None and (rows := sample_rows(stored)) is not None:
        manifest["m"] = rows


def save_distilled(directory: str | Path, method: str, stored: dict[str, torch.Tensor],
                   image_shape: tuple[int, int, int], budget: float, count_targets: bool,
                   manifest: dict[str, Any]) -> DistilledSet:
    report = budget_report(stored, image_shape, budget, count_targets)
    full = {"kind": KIND, "format_version": FORMAT_VERSION, "method": method, "image_shape": list(image_shape),
            "budget": budget, "budget_counts": "all stored tensors" if count_targets else "images only",
            "storage": report.as_dict(), **manifest}
    _fill_m(full, stored)
    found = get_method(method)
    if found.version:  # a plugin's code version, beside the set it made
        full["method_version"] = found.version
    verify_distilled(directory, full, stored, saving=True)  # the method's tensors pass, before any write
    _check_pairs(method, *found.reconstruct(stored, full))  # and rebuild into pairs the evaluation can train on
    shards = save_tensors(directory, stored, "distilled")  # refuses NaN/inf before writing
    full["storage"]["bytes_on_disk"] = sum((Path(directory) / s["file"]).stat().st_size for s in shards)
    full["shards"] = shards
    write_manifest(directory, full)
    return DistilledSet(method, {k: v.detach().cpu() for k, v in stored.items()}, full)


def load_distilled(directory: str | Path) -> DistilledSet:
    manifest = read_manifest(directory, KIND)
    method = manifest.get("method")
    if not isinstance(method, str) or not method:
        raise ArtifactError(f"{directory}/{MANIFEST}: no 'method'; the manifest was edited or damaged: restore it or "
                            f"distil the set again")
    try:
        get_method(method)
    except ValueError as exc:
        raise ArtifactError(f"{directory}: {exc}") from None
    stored = load_tensors(directory, manifest.get("shards"))  # shard names confined, checksums, NaN/inf
    _fill_m(manifest, stored)  # a plugin's set saved before ssdd recorded m for it
    verify_distilled(directory, manifest, stored)  # shapes, m, views, storage and budget against the tensors
    return DistilledSet(method, stored, manifest)


def set_fingerprint(manifest: dict[str, Any]) -> str:
    """A distilled set's identity: the first 12 hex digits of each shard's SHA-256, joined by '+'."""
    return "+".join(str(shard.get("sha256", ""))[:12] for shard in manifest.get("shards", []))
