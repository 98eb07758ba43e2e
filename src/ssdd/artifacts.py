"""Artifacts on disk: tensors as (optionally sharded) safetensors plus a JSON manifest. No pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssdd.runtime import atomic_write, file_sha256, write_json

MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """A missing, corrupt or incompatible artifact."""


def save_tensors(directory: str | Path, tensors: dict[str, torch.Tensor], prefix: str,
                 max_shard_bytes: int = 15 * 2**20, dtype: torch.dtype | None = None) -> list[dict[str, Any]]:
    """Write tensors into shards `<prefix>-00001-of-0000N.safetensors`, each at most max_shard_bytes
    (a single tensor larger than that gets a shard of its own). Returns [{file, sha256, tensors}]."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = tensor
        size += nbytes
    for old in directory.glob(f"{prefix}-*.safetensors"):
        old.unlink()
    shards = []
    for index, group in enumerate(groups, start=1):
        file = directory / f"{prefix}-{index:05d}-of-{len(groups):05d}.safetensors"
        atomic_write(file, lambda tmp, group=group: save_file(group, str(tmp)))
        shards.append({"file": file.name, "sha256": file_sha256(file), "tensors": len(group)})
    return shards


def load_tensors(directory: str | Path, shards: list[dict[str, Any]], verify: bool = True) -> dict[str, torch.Tensor]:
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        file = directory / shard["file"]
        if not file.is_file():
            raise ArtifactError(f"{file}: shard listed in the manifest is missing")
        if verify and file_sha256(file) != shard["sha256"]:
            raise ArtifactError(f"{file}: checksum does not match the manifest (corrupt or modified file)")
        try:
            tensors.update(load_file(str(file)))
        except (SafetensorError, OSError) as exc:
            raise ArtifactError(f"{file}: not a readable safetensors file ({exc})") from None
    return tensors


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    return write_json(Path(directory) / MANIFEST, manifest)


def read_manifest(directory: str | Path, kind: str) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: not found ({directory} is not an ssdd artifact folder)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("kind") != kind:
        raise ArtifactError(f"{path}: expected an artifact of kind '{kind}', found '{manifest.get('kind')}'")
    return manifest
