"""Distillation methods by name. A method distils (returns the tensors it stores) and reconstructs
(turns stored tensors back into training pairs); the storage accountant only ever sees what is stored.

A method also owns everything else that is special about it, and the rest of ssdd asks it instead of
comparing its name: its checks before work (`check`, `check_files`, the budget rule `samples`), how its
saved folder is verified (`verify`), the settings a resume may change (`resumable_keys`), the optional config
sections it reads (`reads`), whether it needs expert trajectories, its note, colour and loss name in reports
(a method that stores class labels says so by its budget rule and its verification: `ssdd.distill.budget`,
`ssdd.distill.verify`). A new method is one module that builds a `DistillMethod` and calls `register_method`;
a method of ssdd with settings of its own also defines their config section there (a dataclass, a field of
`ssdd.distill.config.DistillConfig`). A method outside ssdd is a plugin (ssdd.plugins): it has no config section
of its own.

The hooks and `DistillContext.cfg` get the run's `DistillConfig`, typed `Any` here: that schema imports each
method's config section from the method's module, and the methods import this one, so nothing a method imports
may import the schema.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssdd.data import ImageDataset
from ssdd.plugins import ENV, GROUP, load_plugins
from ssdd.run.distributed import DistInfo
from ssdd.run.tblog import ScalarLog
from ssdd.teacher import Teacher


@dataclass
class DistillContext:
    cfg: Any
    device: torch.device
    teacher: Teacher
    source: ImageDataset  # the source train split, on `device`
    out_dir: Path
    resume: bool = False
    show_progress: bool = True
    dist: DistInfo = field(default_factory=DistInfo)  # this process under torchrun (rank 0 alone writes)
    log: ScalarLog = field(default_factory=ScalarLog)  # TensorBoard scalars (a no-op unless cfg.tensorboard)
    started: float = field(default_factory=time.perf_counter)  # the command's start: stop_after_minutes counts from it


@dataclass
class DistillResult:
    stored: dict[str, torch.Tensor]  # exactly what is written to disk and counted
    info: dict[str, Any] = field(default_factory=dict)  # method-specific manifest entries
    finished: bool = True  # False when stop_after_steps interrupted the run


Reconstruct = Callable[[dict[str, torch.Tensor], dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class StoredSet:
    """A saved distilled folder as a method's `verify` hook sees it (read, not yet trusted)."""

    where: str  # its manifest's path, for a hook's own ArtifactError
    manifest: Mapping[str, Any]
    stored: Mapping[str, torch.Tensor]
    image_shape: tuple[int, int, int]
    budget: float
    counts_targets: bool  # False: the budget counts the images only (KRR-ST's paper convention)
    config: Mapping[str, Any]  # the run's config as recorded ({} when the manifest has none)
    feature_dim: int | None  # the teacher's d as recorded
    rows: int | None  # the samples the tensors hold


class ManifestMismatch(Exception):
    """Raised by a `verify` hook: its text says what in the manifest disagrees with the tensors (the caller
    names the folder and what to do)."""


def _no_check(cfg: Any) -> None:
    return None


def _no_files(cfg: Any, teacher: Mapping[str, Any], available: int | None) -> None:
    return None


def _no_keys(cfg: Any) -> tuple[str, ...]:
    return ()


DEFAULT_LOSS_NAME = "KRR loss (MSE to the teacher)"


@dataclass(frozen=True)
class DistillMethod:
    name: str
    distill: Callable[[DistillContext], DistillResult]
    reconstruct: Reconstruct  # -> (images (M,3,H,W) in [0,1], targets (M,d) float, or labels (M,) int64)
    # True: every torchrun process runs `distill` (the shared outer loop splits each step over them);
    # False: rank 0 runs it alone, the others wait (nothing after it needs the result on them)
    parallel: bool = False
    # --- what the rest of ssdd asks the method -------------------------------------------------------------
    # the settings only this method reads, checked before work without reading a file (ConfigError); no side
    # effects: a spelling to fix is `normalise`'s job
    check: Callable[[Any], None] = _no_check
    # fix accepted spellings of its settings in place (e.g. YAML's bare `off` read as false), before any check
    normalise: Callable[[Any], None] = _no_check
    # checks that read files besides the teacher (e.g. MKDT's experts folder), given the teacher's checked
    # manifest and the number of source images (None when unknown)
    check_files: Callable[[Any, Mapping[str, Any], int | None], None] = _no_files
    # the budget rule: m for this config at this image shape (C,H,W) and teacher d, BudgetError when the budget
    # holds no sample or more than `available`; also checks the settings that need the shape or d. None: the
    # method is not run by `ssdd distill` with a budget rule (an imported set)
    samples: Callable[[Any, tuple[int, int, int], int, int | None], int] | None = None
    # recompute what the manifest of a saved set says from its tensors; raise ManifestMismatch. None: only the
    # target dimension is checked (ssdd.distill.verify)
    verify: Callable[[StoredSet], None] | None = None
    # settings (dotted keys) a --resume may change besides the common ones (ssdd.distill.keys)
    resumable_keys: Callable[[Any], tuple[str, ...]] = _no_keys
    # the optional config sections (distill.config.OPTIONAL_SECTIONS), or single dotted keys of them, it reads;
    # the others change nothing for it (they are neither compared on resume nor part of a study's cache key)
    reads: tuple[str, ...] = ()
    outer_loop: bool = False  # runs the shared KRR outer loop: the outer.* and pool.* settings apply
    # None: `ssdd distill` runs it. Else its sets are written by another command, which this names (for the
    # one-line refusal of method=NAME in ssdd distill), e.g. imported sets: "`ssdd import-distilled`"
    written_by: str | None = None
    targets_optional: bool = False  # count_targets=false (the budget counts the images only) applies to it
    needs_experts: bool = False  # reads expert trajectories (mkdt.experts; a study's experts stage)
    needs_labels: bool = False  # reads the source's class labels (a source without labels is refused before work)
    note: str = ""  # one line for reports: what its sets hold
    colour: str | None = None  # its colour in report figures (a matplotlib colour name)
    loss_name: str = DEFAULT_LOSS_NAME  # what its metrics.jsonl logs as `loss` (the y-axis of its loss curve)
    # a plugin's version of its code: when set, it enters the study cache key of its sets, so that a study
    # distils them again after the code changed (ssdd's own methods go by ssdd's version)
    version: str = ""


_METHODS: dict[str, DistillMethod] = {}


def register_method(method: DistillMethod) -> DistillMethod:
    if method.name in _METHODS:
        raise ValueError(f"distillation method '{method.name}' is registered twice")
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Forget a registered method (a plugin or a test that registered one for a while)."""
    _METHODS.pop(name, None)


# how a method that is not ssdd's own is found, for the messages that name the available ones
PLUGIN_HINT = f"a plugin's method: name its module in {ENV}, or install it as an entry point of {GROUP}"


def get_method(name: str) -> DistillMethod:
    load_plugins()
    if name not in _METHODS:
        raise ValueError(f"unknown distillation method '{name}' (available: {', '.join(sorted(_METHODS))}; "
                         f"{PLUGIN_HINT})")
    return _METHODS[name]


def available_methods() -> list[str]:
    load_plugins()
    return sorted(_METHODS)


def find_method(name: Any) -> DistillMethod | None:
    """The method registered under `name`, or None (a set saved by a method this installation lacks)."""
    load_plugins()
    return _METHODS.get(name) if isinstance(name, str) else None


def methods_where(flag: Callable[[DistillMethod], bool]) -> list[str]:
    """The names of the registered methods for which `flag` holds, sorted (for messages)."""
    load_plugins()
    return sorted(name for name, method in _METHODS.items() if flag(method))


def loss_name(method: str) -> str:
    """What a method logs as `loss` in its metrics.jsonl (the y-axis label of its loss curve)."""
    found = find_method(method)
    return found.loss_name if found else DEFAULT_LOSS_NAME
