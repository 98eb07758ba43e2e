"""The run folder that every stage shares (teacher, distill, evaluate, study).

One place for the rules: the resolved config and its hash, the check that a resumed run has the same
settings, atomic checkpoints, and the refusal to start a fresh run in a folder that already holds one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ssdd.runtime import atomic_write

CHECKPOINT = "checkpoint.pt"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_hash(config: Mapping[str, Any], ignore: Iterable[str] = (), legacy: Mapping[str, Any] | None = None) -> str:
    """16 hex digits of SHA-256 over the config's values, without the `ignore` keys (dotted, flattened) and
    without the `legacy` keys that hold their legacy value: a setting added later, at the value that
    behaves as before it existed, leaves the hashes of earlier configs (study cache keys) unchanged."""
    skipped, legacy = set(ignore), legacy or {}
    values = {k: v for k, v in flatten(config).items()
              if k not in skipped and not (k in legacy and legacy[k] == v)}
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_resume_compatible(saved: Mapping[str, Any], current: Mapping[str, Any],
                            allowed: Iterable[str] = (), legacy: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume with a config that differs in anything but the `allowed` keys; a `legacy` key that
    the saved config lacks (it predates the setting) matches when the current value is its legacy value."""
    free, legacy = set(allowed), legacy or {}
    a, b = flatten(saved), flatten(current)
    a.update({k: v for k, v in legacy.items() if k not in a})
    differing = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in free]
    if differing:
        details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in differing[:6])
        raise ValueError(f"--resume with a different config ({details}); resume with the original settings")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save through a temporary file and a rename: a kill never leaves half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by save_checkpoint (tensors and plain containers only, never arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(f"{path}: not a readable ssdd checkpoint ({type(exc).__name__}); "
                         f"start a fresh run in another out_dir") from None


def claim(out_dir: str | Path, resume: bool, markers: Iterable[str], what: str) -> Path:
    """The run folder for a fresh run (refused when it holds any of `markers`) or a resumed one (needs them)."""
    out_dir = Path(out_dir)
    present = [m for m in markers if (out_dir / m).exists()]
    if not resume and present:
        raise FileExistsError(f"{out_dir} already holds a {what} ({present[0]}); pass --resume to continue it "
                              f"or choose another out_dir")
    return out_dir
