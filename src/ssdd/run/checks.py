"""Small checks every command's validation shares (each command's own checks live with it: teacher/validate.py,
distill/validate.py, experts/validate.py, evaluation/validate.py, study/validate.py; data/validate.py for the
data files). Validation runs before work: every command checks, in seconds, everything it can before its
first expensive step.

Errors are ConfigError / DataError / ArtifactError / BudgetError (ValueErrors): one line naming the key,
value or file and what to do.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import fields, is_dataclass
from typing import Any

from ssdd.config import ConfigError, ModelConfig, is_count


# ----------------------------------------------------------------------------- numbers and choices
def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole(key: str, value: Any, minimum: int) -> None:
    if not is_count(value, minimum):
        raise ConfigError(f"{key}={value!r}: must be a whole number, at least {minimum}")


def batch_fits(key: str, batch: int, available: int | None, what: str = "source images") -> None:
    """A batch drawn from `available` images holds no more than them (None: the count is not known yet).
    KRR-ST's outer loop draws its real batch with replacement, so a larger one would run, but only by repeating
    images, at a memory cost that grows with the batch (outer.batch_size=1e8 would ask for ~77 GB)."""
    if available is not None and batch > available:
        raise ConfigError(f"{key}={batch} exceeds the {available} {what}; lower {key}")


def positive(key: str, value: Any) -> None:
    if not _number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r}: must be a finite number above 0")


def non_negative(key: str, value: Any) -> None:
    if not _number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key}={value!r}: must be a finite number, 0 or more")


def sgd_settings(section: str, cfg: Any) -> None:
    """An SGD recipe's `lr` (> 0), `momentum` and `weight_decay` (>= 0), under `section` ("" at the top level)."""
    prefix = f"{section}." if section else ""
    positive(f"{prefix}lr", cfg.lr)
    non_negative(f"{prefix}momentum", cfg.momentum)
    non_negative(f"{prefix}weight_decay", cfg.weight_decay)


def probability(key: str, value: Any) -> None:
    if not _number(value) or not 0 <= value <= 1:
        raise ConfigError(f"{key}={value!r}: must be a probability in [0, 1]")


def choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: must be one of {', '.join(allowed)}")


SEEDS = 2**32  # seeds are 0 to 2**32 - 1: the generators seeded from them (seed * 1_000_003 + rank) fit in 64 bits


def well_formed(cfg: Any, prefix: str = "") -> None:
    """A config built in Python as one loaded from YAML would be: no attribute that is not a setting
    (`cfg.outer.stpes = 1` would be ignored), every group of settings its dataclass and every list a list of
    what it holds (a dict or a string in their place would fail deep inside a run, or be read letter by letter),
    and no NaN or inf anywhere."""
    names = [f.name for f in fields(cfg)]
    stray = [name for name in getattr(cfg, "__dict__", {}) if name not in names]
    if stray:
        close = difflib.get_close_matches(stray[0], names, n=1)
        hint = f"did you mean {prefix}{close[0]}?" if close else f"its settings: {', '.join(names)}"
        raise ConfigError(f"{prefix}{stray[0]}: not a setting of {type(cfg).__name__} ({hint})")
    for f in fields(cfg):
        key, value = f"{prefix}{f.name}", getattr(cfg, f.name)
        default = f.default_factory() if callable(f.default_factory) else None
        if is_dataclass(default):
            _check_group(key, value, type(default))
        elif isinstance(default, list):
            if not isinstance(value, (list, tuple)):
                hint = f"; write [{value!r}]" if isinstance(value, str) else ""
                raise ConfigError(f"{key}={value!r}: expected a list{hint}")
            if default and is_dataclass(default[0]):
                for i, item in enumerate(value):
                    _check_group(f"{key}[{i}]", item, type(default[0]))
        _finite_value(key, value)


def _check_group(key: str, value: Any, group: type) -> None:
    if not isinstance(value, group):
        raise ConfigError(f"{key}: expected {group.__name__} settings, got a {type(value).__name__}; build it as "
                          f"{group.__name__}(...), or pass overrides such as {key}.KEY=VALUE to load_config")


def _finite_value(key: str, value: Any) -> None:
    if is_dataclass(value) and not isinstance(value, type):
        well_formed(value, f"{key}.")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _finite_value(f"{key}[{i}]", item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value}: must be a finite number")
    elif isinstance(value, int) and not isinstance(value, bool):
        shown = f"{value}" if len(str(abs(value))) <= 30 else f"a number of {len(str(abs(value)))} digits"
        if key.rsplit(".", 1)[-1] == "seed" and not 0 <= value < SEEDS:  # seeds derived from it stay in 64 bits
            raise ConfigError(f"{key}={shown}: a seed is a whole number from 0 to {SEEDS - 1:,}")
        if not -2**63 <= value < 2**63:
            raise ConfigError(f"{key}={shown}: out of range (a 64-bit whole number, {-2**63:,} to {2**63 - 1:,})")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_model(key: str, cfg: ModelConfig, resolution: int) -> int:
    """The network builds at this resolution; returns its feature dimension."""
    from ssdd.models import build_model

    whole(f"{key}.width", cfg.width, 0)
    whole(f"{key}.depth", cfg.depth, 0)
    try:
        return int(build_model(cfg, resolution).feature_dim)
    except Exception as exc:  # any builder failure is a setting to fix
        raise ConfigError(f"{key}: {cfg.name} (width {cfg.width}, depth {cfg.depth}, feature {cfg.feature}) "
                          f"cannot be built at {resolution} px: {first_line(exc)}") from None


# ----------------------------------------------------------------------------- device and output folder
def check_device(name: str, key: str = "device") -> None:
    import torch

    from ssdd.run.runtime import resolve_device

    text = str(name)
    try:
        device = resolve_device(text)
    except (RuntimeError, ValueError):
        if text.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"{key}={text}: CUDA is not available here (no GPU visible, or a CPU-only torch); "
                              f"use {key}=cpu or {key}=auto") from None
        raise ConfigError(f"{key}={text!r}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):  # torch knows twenty device types; ssdd runs and is tested on two
        raise ConfigError(f"{key}={text}: ssdd runs on cpu and cuda only (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}={text}: this machine has {torch.cuda.device_count()} GPU(s) "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")


# ----------------------------------------------------------------------------- shared settings
def check_probe(cfg: Any, key: str = "probe") -> None:
    whole(f"{key}.iterations", cfg.iterations, 1)
    whole(f"{key}.batch_size", cfg.batch_size, 1)
    positive(f"{key}.lr", cfg.lr)
    non_negative(f"{key}.momentum", cfg.momentum)
    non_negative(f"{key}.weight_decay", cfg.weight_decay)


def auto_on_off(key: str, value: Any) -> None:
    """An auto | on | off setting (channels_last, the fast paths), a ConfigError in one line otherwise."""
    from ssdd.run.runtime import tri_state

    try:
        tri_state(value, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def start_run(stage: str, out_dir: str) -> None:
    """The checks passed: remember the run (for interrupt messages) and clean its stale temporary files."""
    from ssdd.run.guard import clean_stale_tmp, register_run

    register_run(stage, out_dir)
    clean_stale_tmp(out_dir)


