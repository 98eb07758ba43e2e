"""Process-level helpers: seeding, device choice, versions, fingerprints and atomic file writes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:N' into a device, failing clearly when CUDA is missing."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{name}' was requested but CUDA is not available; use device=cpu")
        if name == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def tri_state(setting: object, key: str) -> str:
    """An auto | on | off setting as one of those words (YAML's bare on/off arrive as True/False); a one-line
    ValueError naming `key` for anything else."""
    text = {"true": "on", "false": "off"}.get(str(setting).lower(), str(setting).lower())
    if text not in ("auto", "on", "off"):
        raise ValueError(f"{key}={setting!r}: must be one of auto, on, off")
    return text


def channels_last(setting: object, key: str = "channels_last") -> bool:
    """Whether a `channels_last` setting (auto | on | off) asks for the channels-last memory format. auto = on:
    measured faster on CUDA and on the CPU (docs/performance.md)."""
    return tri_state(setting, key) != "off"


def gpu_path(setting: object, key: str, device: torch.device) -> str:
    """A fast path's auto | on | off setting on `device`: auto stays auto on CUDA (where the fast paths are meant
    to run; a caller may weigh it further) and is off elsewhere, so the CPU keeps the plain path and its results
    bit for bit."""
    text = tri_state(setting, key)
    return "off" if text == "auto" and device.type != "cuda" else text


# a precision setting (outer.precision, outer.teacher_precision, evaluate's precision) -> the autocast dtype of the
# forward passes it covers (None: float32, no autocast at all)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def precision_dtype(name: str, key: str) -> torch.dtype | None:
    """The autocast dtype of a precision setting `key` (None: float32); a one-line ValueError for other names."""
    if name not in PRECISIONS:
        raise ValueError(f"{key}={name!r}: must be one of {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def forward_precision(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Autocast to `dtype` on `device`; None: nothing at all (the float32 forward, bit-identical to no context)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor.to(device)`; a CPU tensor bound for a GPU goes through pinned memory and is copied asynchronously
    (PyTorch's caching host allocator keeps the pinned block until the copy has run), where a copy from pageable
    memory would make the host wait for every kernel queued before it. The values are the same."""
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def versions() -> dict[str, str]:
    """Versions of everything that can change a result."""
    import torchvision

    from ssdd import __version__

    info = {
        "ssdd": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["cuda"] = str(torch.version.cuda)
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """Short sha256 over the raw bytes of tensors (order, shape and dtype included)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# what torch's zip writer (caffe2 inline_container.cc, its iostream) and safetensors say when a write fails for
# want of space: they raise RuntimeError / SafetensorError, not OSError(ENOSPC)
_DISK_FULL_PATTERNS = ("unexpected pos", "file write failed", "iostream error", "No space left on device",
                       "os error 28", "StorageFull")


def is_disk_full(exc: BaseException) -> bool:
    """True for an error of a write that failed because the device is full (ENOSPC, or the pattern torch's and
    safetensors' writers raise instead)."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return isinstance(exc, Exception) and any(pattern in str(exc) for pattern in _DISK_FULL_PATTERNS)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call writer(tmp_path) then rename onto path, so a crash never leaves a half-written file. A write that fails
    for want of space raises OSError(ENOSPC) naming `path` (the file there, if any, is left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            writer(Path(tmp))
        except Exception as exc:
            if is_disk_full(exc):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))
