"""The teacher artifact: backbone weights (sharded safetensors) + manifest, and the frozen Teacher module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssdd.artifacts.files import ArtifactError, load_tensors, read_manifest, save_tensors, write_manifest
from ssdd.artifacts.integrity import function_fingerprint, shard_fingerprint, verify_teacher_manifest
from ssdd.augment.ops import normalize
from ssdd.config import ModelConfig
from ssdd.models import build_model
from ssdd.run.runtime import resolve_device

KIND = "ssdd.teacher"
FORMAT_VERSION = 1


class Teacher(nn.Module):
    """Frozen encoder g: images in [0,1] -> (B, d) features, normalising with its own statistics."""

    def __init__(self, backbone: nn.Module, mean: list[float], std: list[float], manifest: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.manifest = manifest
        self.feature_dim: int = backbone.feature_dim
        self.resolution: int = int(manifest["resolution"])

    def train(self, mode: bool = True) -> Teacher:  # the teacher never leaves eval mode
        return super().train(False)

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        """Features of float (B, 3, R, R) images in [0, 1] at the teacher's resolution R."""
        self._check(images01, "teacher(x)", pixels=False)
        return self.backbone(normalize(images01, self.mean, self.std))

    def encode(self, images_uint8: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Teacher features of uint8 (N, 3, R, R) images at the teacher's resolution R, batched, on its device."""
        from ssdd.evaluation.linear_probe import extract_features

        self._check(images_uint8, "Teacher.encode", pixels=True)
        return extract_features(self.backbone, images_uint8, self.mean, self.std, batch_size)

    def _check(self, images: torch.Tensor, what: str, pixels: bool) -> None:
        """A ValueError in one line for images the teacher would embed wrongly without failing: the other dtype
        (scaled by 255 twice, or not at all) or another resolution (its features mean something else)."""
        if pixels and images.dtype != torch.uint8:
            raise ValueError(f"{what} takes uint8 pixels (0 to 255), got {images.dtype}; float images in [0, 1] go "
                             f"through teacher(x)")
        if not pixels and not images.is_floating_point():
            raise ValueError(f"{what} takes float images in [0, 1], got {images.dtype}; uint8 pixels go through "
                             f"Teacher.encode")
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (self.resolution,) * 2:
            raise ValueError(f"{what} takes (N, 3, {self.resolution}, {self.resolution}) images (the teacher's "
                             f"resolution), got {tuple(images.shape)}")

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", ""))

    @property
    def function_fingerprint(self) -> str:
        """Shards + architecture, feature, resolution, normalisation (recomputed for older manifests)."""
        return str(self.manifest.get("function_fingerprint") or function_fingerprint(self.manifest))


def save_teacher(directory: str | Path, backbone: nn.Module, manifest: dict[str, Any],
                 dtype: torch.dtype = torch.float32, max_shard_bytes: int = 15 * 2**20) -> Path:
    """Write backbone-*.safetensors shards and manifest.json (the manifest gets kind, shards, fingerprint)."""
    directory = Path(directory)
    state = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    shards = save_tensors(directory, state, "backbone", max_shard_bytes, dtype)
    manifest = {"kind": KIND, "format_version": FORMAT_VERSION, **manifest, "dtype": str(dtype).replace("torch.", ""),
                "shards": shards, "fingerprint": shard_fingerprint(shards)}
    manifest["function_fingerprint"] = function_fingerprint(manifest)
    verify_teacher_manifest(directory, manifest)
    write_manifest(directory, manifest)
    return directory


def load_teacher(directory: str | Path, device: torch.device | str = "cpu") -> Teacher:
    """Rebuild a frozen Teacher (float32) from an artifact folder, on `device` (a torch.device, or a name as the
    configs take it: auto, cpu, cuda, cuda:N; cuda where there is none is a one-line error)."""
    if isinstance(device, str):  # under torchrun, cuda is this process's GPU
        device = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    manifest = read_manifest(directory, KIND)
    verify_teacher_manifest(directory, manifest)  # edited function fields, shard names outside the folder
    try:
        model_cfg = ModelConfig(**manifest["model"])
        resolution = int(manifest["resolution"])
        mean, std = manifest["normalization"]["mean"], manifest["normalization"]["std"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{directory}: manifest lacks a field ({exc})") from None
    try:
        backbone = build_model(model_cfg, resolution)
    except (ValueError, TypeError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{directory}: its manifest's model {manifest['model']} cannot be built at "
                            f"{resolution} px ({reason})") from None
    if manifest.get("feature_dim") is not None and manifest["feature_dim"] != backbone.feature_dim:
        raise ArtifactError(f"{directory}: its manifest says feature_dim {manifest['feature_dim']}, but model "
                            f"{manifest['model']} at {resolution} px computes {backbone.feature_dim} features; the "
                            f"manifest was edited: restore it")
    state = {k: v.float() for k, v in load_tensors(directory, manifest["shards"]).items()}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # mis-shaped tensors
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise ArtifactError(f"{directory}: weights do not fit model {model_cfg.name} at {resolution} px "
                            f"({detail or 'shape mismatch'})") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ArtifactError(f"{directory}: weights do not fit model {model_cfg.name} "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return Teacher(backbone, mean, std, manifest).to(device)
