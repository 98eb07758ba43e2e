"""The distilled-set artifact: the stored tensors (safetensors) + manifest, and loading them back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssdd.artifacts.files import ArtifactError, load_tensors, read_manifest, save_tensors, write_manifest
from ssdd.artifacts.storage import StorageReport, check_budget, storage_of
from ssdd.distill.registry import get_method
from ssdd.distill.verify import verify_distilled

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
        are not clipped, so they may stray a little outside it. Supervised sets give labels (M,)."""
        return get_method(self.method).reconstruct(self.stored, self.manifest)


def budget_report(stored: dict[str, torch.Tensor], image_shape: tuple[int, int, int], budget: float,
                  count_targets: bool) -> StorageReport:
    """Check the budget on what counts (all stored tensors, or images only under the paper convention)."""
    report = storage_of(stored, image_shape)
    counted = stored if count_targets else {k: v for k, v in stored.items() if k != "targets"}
    check_budget(storage_of(counted, image_shape), budget)
    return report


def save_distilled(directory: str | Path, method: str, stored: dict[str, torch.Tensor],
                   image_shape: tuple[int, int, int], budget: float, count_targets: bool,
                   manifest: dict[str, Any]) -> DistilledSet:
    report = budget_report(stored, image_shape, budget, count_targets)
    full = {"kind": KIND, "format_version": FORMAT_VERSION, "method": method, "image_shape": list(image_shape),
            "budget": budget, "budget_counts": "all stored tensors" if count_targets else "images only",
            "storage": report.as_dict(), **manifest}
    verify_distilled(directory, full, stored)  # the manifest describes its tensors, before anything is written
    shards = save_tensors(directory, stored, "distilled")  # refuses NaN/inf before writing
    full["storage"]["bytes_on_disk"] = sum((Path(directory) / s["file"]).stat().st_size for s in shards)
    full["shards"] = shards
    write_manifest(directory, full)
    return DistilledSet(method, {k: v.detach().cpu() for k, v in stored.items()}, full)


def load_distilled(directory: str | Path) -> DistilledSet:
    manifest = read_manifest(directory, KIND)
    try:
        method = manifest["method"]
        get_method(method)
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{directory}: {exc}") from None
    stored = load_tensors(directory, manifest.get("shards"))  # shard names confined, checksums, NaN/inf
    verify_distilled(directory, manifest, stored)  # shapes, m, views, storage and budget against the tensors
    return DistilledSet(method, stored, manifest)


def set_fingerprint(manifest: dict[str, Any]) -> str:
    """A distilled set's identity: the first 12 hex digits of each shard's SHA-256, joined by '+'."""
    return "+".join(str(shard.get("sha256", ""))[:12] for shard in manifest.get("shards", []))
