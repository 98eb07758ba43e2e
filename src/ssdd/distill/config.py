"""Schema of `ssdd distill`: the settings every method shares, and a section for each part with settings of its
own, defined in that part's module: `outer` (the outer loop KRR-ST and Boost share, ssdd.distill.outer; defaults =
KRR-ST's public settings, docs/method.md section 3), `pool` (ssdd.distill.pool), `boost` (ssdd.distill.boost,
docs/method.md sections 4 and 6) and `mkdt` (ssdd.distill.mkdt). The schema is static: a new section is a field
here, whatever the order in which the methods are imported."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ssdd.config import DataConfig, current_form
from ssdd.distill.boost import BoostConfig
from ssdd.distill.mkdt import MKDTConfig
from ssdd.distill.outer import OuterConfig
from ssdd.distill.pool import PoolConfig


@dataclass
class DistillConfig:
    seed: int = 0
    out_dir: str = "runs/distill"
    device: str = "auto"
    method: str = "krr_st"  # krr_st | boost | mkdt | random | kmeans | high_loss | random_supervised | a plugin's
    name: str = ""  # label of this set in evaluation reports (default: method@budget), e.g. an ablation
    budget: float = 100.0  # storage budget N in image-equivalents
    count_targets: bool = True  # count Y_s in the budget; false = m = N images (KRR-ST paper convention)
    teacher: str = ""  # an ssdd teacher folder (required; from `ssdd teacher` or `ssdd import-teacher`)
    stop_after_steps: int = 0  # run at most this many outer steps in this invocation (0 = to the end)
    # pause (checkpointed, like stop_after_steps) before a step that would end past this many minutes of this
    # invocation, set-up included (0 = no limit); leave a margin for saving the set
    stop_after_minutes: float = 0.0
    checkpoint_every: int = 500  # outer steps between checkpoints
    log_every: int = 50  # outer steps between lines of metrics.jsonl
    tensorboard: bool = False  # also write each log line to out_dir/tensorboard (pip install "ssdd[tensorboard]")
    data: DataConfig = field(default_factory=DataConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    boost: BoostConfig = field(default_factory=BoostConfig)
    mkdt: MKDTConfig = field(default_factory=MKDTConfig)
    kmeans_iterations: int = 100  # k-means subset: Lloyd iterations


# not device (RNG states are device-specific); not the number of processes either: a checkpoint resumes under
# any. A moved experts folder is checked by its content; outer.channels_last, outer.fast, outer.teacher_cache
# (rebuilt by every invocation, never checkpointed), outer.compile and mkdt.recompute give the same results to float
# rounding.
RESUMABLE_KEYS = ("stop_after_steps", "stop_after_minutes", "out_dir", "tensorboard", "outer.split_support",
                  "outer.channels_last", "outer.fast", "outer.teacher_cache", "outer.compile", "mkdt.experts",
                  "mkdt.recompute")
# Settings added after runs were made, at the value that behaves as before them: a config holding that value
# keeps its study cache key and resumes a run saved without it (run.folder.config_hash, check_resume_compatible).
LEGACY_VALUES: dict[str, object] = {"outer.precision": "fp32", "outer.teacher_precision": "fp32"}
# Also free on resume: the label, the log and checkpoint cadence.
FREE_KEYS = ("name", "log_every", "checkpoint_every")
# Sections added after the first methods: a method that does not read one (DistillMethod.reads) ignores it, on
# resume and in a study's cache key (runs and study stages made before the section existed lack it).
OPTIONAL_SECTIONS = ("mkdt",)


def with_legacy_values(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config (nested dict) with each LEGACY_VALUES setting it lacks set to its legacy value: a run saved
    before the setting existed computed what that value computes, so --resume compares against it."""
    filled = copy.deepcopy(current_form(dict(saved)))  # a section saved under its old name: today's name
    for dotted, value in LEGACY_VALUES.items():
        *sections, key = dotted.split(".")
        node = filled
        for section in sections:
            node = node.setdefault(section, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.setdefault(key, value)
    return filled
