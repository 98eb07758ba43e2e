"""Artifacts on disk: tensors as (optionally sharded) safetensors plus a JSON manifest. No pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssdd.run.runtime import atomic_write, file_sha256, write_json

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
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            converted = tensor.to(dtype)
            if bool(torch.isfinite(tensor).all()) and not bool(torch.isfinite(converted).all()):
                raise ArtifactError(f"{directory}: tensor '{name}' overflows {str(dtype).replace('torch.', '')} "
                                    f"(values beyond its range); nothing was written: save as float32 "
                                    f"(save_dtype=float32 with --resume)")
            tensor = converted
        check_finite({name: tensor}, str(directory), saving=True)
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
    if not isinstance(shards, list) or not shards:
        raise ArtifactError(f"{directory / MANIFEST}: 'shards' must list the tensor files; the manifest is damaged")
    for shard in shards:
        if not isinstance(shard, dict) or not isinstance(shard.get("sha256"), str):
            raise ArtifactError(f"{directory / MANIFEST}: a shard entry lacks 'file' or 'sha256'; the manifest is "
                                f"damaged")
        file = shard_path(directory, shard.get("file"))
        if not file.is_file():
            raise ArtifactError(f"{file}: shard listed in the manifest is missing")
        if verify and file_sha256(file) != shard["sha256"]:
            raise ArtifactError(f"{file}: checksum does not match the manifest (corrupt or modified file)")
        try:
            loaded = load_file(str(file))
        except (SafetensorError, OSError) as exc:
            raise ArtifactError(f"{file}: not a readable safetensors file ({exc})") from None
        check_finite(loaded, f"{file}")
        tensors.update(loaded)
    return tensors


def shard_path(directory: str | Path, name: Any) -> Path:
    """The file a manifest's shard entry names: a plain file name inside `directory`, never a path that
    leaves it (`../`, an absolute path, a sub-folder)."""
    directory = Path(directory)
    text = name if isinstance(name, str) else ""
    if (not text or text in (".", "..") or "/" in text or "\\" in text or ":" in text
            or Path(text).is_absolute() or text.startswith("~")):
        raise ArtifactError(f"{directory / MANIFEST}: shard file {name!r} is not a plain file name inside the "
                            f"artifact folder; the manifest is damaged or was edited: restore it")
    return directory / text


class NonFiniteError(ArtifactError, FloatingPointError):
    """Tensors about to be saved hold NaN or inf: the run diverged (a numerical failure, not bad input)."""


def check_finite(tensors: dict[str, torch.Tensor], where: str, saving: bool = False) -> None:
    """Refuse floating-point tensors holding NaN or inf (a diverged run must never become an artifact):
    NonFiniteError when saving, ArtifactError (a corrupt file) when loading."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if not bad:
                continue
            what = f"{where}: tensor '{name}' holds {bad} non-finite value(s) (NaN or inf) of {tensor.numel()}"
            if saving:
                raise NonFiniteError(f"{what}; nothing was written: the run diverged, rerun it with a lower "
                                     f"learning rate")
            raise ArtifactError(f"{what}; the artifact is corrupt or came from a diverged run: recreate it")


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    return write_json(Path(directory) / MANIFEST, manifest)


def read_manifest(directory: str | Path, kind: str) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        if (Path(directory) / "checkpoint.pt").is_file():  # a run folder: its artifact is written when it ends
            raise ArtifactError(f"{directory}: a run that has not finished (no {MANIFEST} yet, a checkpoint.pt): "
                                f"continue it with --resume and the same out_dir, then use the folder")
        raise ArtifactError(f"{path}: not found ({directory} is not an ssdd artifact folder)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:  # unreadable (permissions), not damaged
        raise ArtifactError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: holds {type(manifest).__name__ if manifest is not None else 'null'}, not a "
                            f"manifest (a JSON object): restore it or make the artifact again")
    if manifest.get("kind") != kind:
        raise ArtifactError(f"{path}: expected an artifact of kind '{kind}', found '{manifest.get('kind')}'")
    return manifest
