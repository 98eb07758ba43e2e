"""Distillation methods by name. A method distils (returns the tensors it stores) and reconstructs
(turns stored tensors back into training pairs); the storage accountant only ever sees what is stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssdd.data import ImageDataset
from ssdd.distill.config import DistillConfig
from ssdd.distributed import DistInfo
from ssdd.tblog import ScalarLog
from ssdd.teacher import Teacher


@dataclass
class DistillContext:
    cfg: DistillConfig
    device: torch.device
    teacher: Teacher
    source: ImageDataset  # the source train split, on `device`
    out_dir: Path
    resume: bool = False
    show_progress: bool = True
    dist: DistInfo = field(default_factory=DistInfo)  # this process under torchrun (rank 0 alone writes)
    log: ScalarLog = field(default_factory=ScalarLog)  # TensorBoard scalars (a no-op unless cfg.tensorboard)


@dataclass
class DistillResult:
    stored: dict[str, torch.Tensor]  # exactly what is written to disk and counted
    info: dict[str, Any] = field(default_factory=dict)  # method-specific manifest entries
    finished: bool = True  # False when stop_after_steps interrupted the run


Reconstruct = Callable[[dict[str, torch.Tensor], dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class DistillMethod:
    name: str
    distill: Callable[[DistillContext], DistillResult]
    reconstruct: Reconstruct  # -> (images (M,3,H,W) in [0,1], targets (M,d) float, or labels (M,) int64)
    # True: every torchrun process runs `distill` (the shared outer loop splits each step over them);
    # False: rank 0 runs it alone, the others wait (nothing after it needs the result on them)
    parallel: bool = False


_METHODS: dict[str, DistillMethod] = {}


def register_method(method: DistillMethod) -> DistillMethod:
    if method.name in _METHODS:
        raise ValueError(f"distillation method '{method.name}' is registered twice")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> DistillMethod:
    if name not in _METHODS:
        raise ValueError(f"unknown distillation method '{name}' (available: {', '.join(sorted(_METHODS))})")
    return _METHODS[name]


def available_methods() -> list[str]:
    return sorted(_METHODS)
