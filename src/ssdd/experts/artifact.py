"""The expert-trajectories artifact: one safetensors file per expert and a JSON manifest. No pickle.

    manifest.json              kind ssdd.experts; teacher and source fingerprints; the student model and its
                               parameter layout; epochs; one entry per expert (file, SHA-256, final loss)
    expert-00001.safetensors   trajectory (epochs + 1, P) float32: the flat parameters at the start and
                               after every epoch; sample_loss (N,) float32: each source image's squared
                               error (mean over d) under the expert's final parameters

An expert file is read lazily, two snapshots at a time, and its checksum is verified the first time it is
opened, so memory does not grow with the number of experts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ssdd.artifacts.files import ArtifactError, read_manifest, shard_path
from ssdd.run.runtime import file_sha256

KIND = "ssdd.experts"
FORMAT_VERSION = 1


def expert_file(index: int) -> str:
    return f"expert-{index + 1:05d}.safetensors"


@dataclass
class ExpertTrajectories:
    directory: Path
    manifest: dict[str, Any]
    _verified: set[str] = field(default_factory=set)

    @property
    def count(self) -> int:
        return len(self.manifest["experts"])

    @property
    def epochs(self) -> int:
        return int(self.manifest["epochs"])

    @property
    def parameters(self) -> int:
        return int(self.manifest["parameters"])

    @property
    def layout(self) -> list[dict[str, Any]]:
        return list(self.manifest["layout"])

    def _path(self, index: int) -> Path:
        entry = self.manifest["experts"][index]
        path = shard_path(self.directory, entry.get("file"))
        if entry["file"] not in self._verified:
            if not path.is_file():
                raise ArtifactError(f"{self.directory}: expert file {entry['file']} is missing")
            if file_sha256(path) != entry.get("sha256"):
                raise ArtifactError(f"{path}: checksum mismatch: the file was changed or damaged after it was written")
            self._verified.add(entry["file"])
        return path

    def _read(self, index: int, name: str, row: int | None = None) -> torch.Tensor:
        path = self._path(index)
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensor = handle.get_slice(name)[row] if row is not None else handle.get_tensor(name)
        except (SafetensorError, OSError, KeyError) as exc:
            raise ArtifactError(f"{path}: cannot read '{name}' ({exc})") from None
        tensor = tensor.float()
        if not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path}: '{name}' holds NaN or infinite values")
        return tensor.reshape(-1)

    def snapshot(self, index: int, epoch: int) -> torch.Tensor:
        """Expert `index`'s flat parameters after `epoch` epochs (0 = its initialisation)."""
        if not 0 <= epoch <= self.epochs:
            raise ValueError(f"epoch {epoch} is outside the experts' 0..{self.epochs}")
        vector = self._read(index, "trajectory", epoch)
        if vector.numel() != self.parameters:
            raise ArtifactError(f"{self.directory}: expert {index + 1} has {vector.numel()} parameters per snapshot, "
                                f"the manifest says {self.parameters}")
        return vector

    def sample_scores(self) -> torch.Tensor:
        """Each source image's final-parameter loss, averaged over the experts: MKDT's high-loss ranking."""
        total = None
        for index in range(self.count):
            loss = self._read(index, "sample_loss")
            total = loss if total is None else total + loss
        assert total is not None
        return total / self.count


def load_experts(directory: str | Path) -> ExpertTrajectories:
    """Open an expert-trajectories folder (manifest checked; expert files are read when used)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"expert trajectories not found: {directory} (make them with `ssdd experts`)")
    manifest = read_manifest(directory, KIND)
    try:
        experts, epochs, size = manifest["experts"], int(manifest["epochs"]), int(manifest["parameters"])
        layout_size = sum(int(torch.Size(p["shape"]).numel()) for p in manifest["layout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory}: manifest lacks a field ({exc})") from None
    if not isinstance(experts, list) or not experts:
        raise ArtifactError(f"{directory}: the manifest lists no expert")
    if epochs < 1 or layout_size != size:
        raise ArtifactError(f"{directory}: inconsistent manifest (epochs {epochs}, {size} parameters, layout "
                            f"of {layout_size})")
    for entry in experts:
        path = shard_path(directory, entry.get("file") if isinstance(entry, dict) else None)  # inside the folder
        _check_rows(path, epochs, size)
    return ExpertTrajectories(directory, manifest)


def _check_rows(path: Path, epochs: int, size: int) -> None:
    """An expert file holds one trajectory row per epoch and its start (epochs + 1 rows of `size` parameters),
    as the manifest says: read from the file's header, no tensor is loaded. A manifest whose epoch count
    disagrees with its files would otherwise be copied into the sets made from it, and fail mid-run."""
    if not path.is_file():
        raise ArtifactError(f"{path.parent}: expert file {path.name} is missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            shape = list(handle.get_slice("trajectory").get_shape())
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read 'trajectory' ({exc})") from None
    if shape != [epochs + 1, size]:
        raise ArtifactError(f"{path}: trajectory of shape {shape}, but the manifest says {epochs} epochs of {size} "
                            f"parameters ({[epochs + 1, size]}); the manifest or the file was changed: restore "
                            f"the folder or train the experts again")
