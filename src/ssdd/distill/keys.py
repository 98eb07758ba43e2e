"""Which settings of a distillation config a method leaves free: on --resume, and in a study's cache key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ssdd.config import config_to_dict
from ssdd.distill.config import FREE_KEYS, OPTIONAL_SECTIONS, RESUMABLE_KEYS, DistillConfig
from ssdd.distill.registry import find_method


def method_free_keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Dotted keys of a distill config (a dict) that only another method reads: the keys of the optional
    sections its method does not read (MKDT's options for any other method, except mkdt.experts for the
    high-loss subset). They change nothing there, and runs and study stages made before the section existed
    lack them."""
    method = find_method(config.get("method"))
    reads = method.reads if method else ()
    return tuple(f"{section}.{key}" for section in OPTIONAL_SECTIONS if section not in reads
                 for key in (config.get(section) or {}) if f"{section}.{key}" not in reads)


def resumable_keys(cfg: DistillConfig) -> tuple[str, ...]:
    """Every setting a --resume of this distillation may change."""
    method = find_method(cfg.method)
    extra = method.resumable_keys(cfg) if method else ()
    return (*RESUMABLE_KEYS, *FREE_KEYS, *method_free_keys(config_to_dict(cfg)), *extra)
