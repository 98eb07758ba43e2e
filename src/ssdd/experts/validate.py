"""`ssdd experts`' checks before work: settings, device, output folder, the teacher and the training split."""

from __future__ import annotations

from typing import Any

from ssdd.config import ConfigError
from ssdd.data.validate import check_split
from ssdd.run.checks import (
    batch_fits,
    check_device,
    check_model,
    choice,
    non_negative,
    sgd_settings,
    start_run,
    well_formed,
    whole,
)
from ssdd.run.folder import check_writable
from ssdd.teacher.validate import teacher_manifest


def check_experts_settings(cfg: Any) -> None:
    """Everything of an experts config that needs no file."""
    well_formed(cfg)
    whole("num_experts", cfg.num_experts, 1)
    whole("epochs", cfg.epochs, 1)
    whole("batch_size", cfg.batch_size, 1)
    sgd_settings("", cfg)
    choice("augment", cfg.augment, ("none", "crop_flip"))
    whole("stop_after_experts", cfg.stop_after_experts, 0)
    non_negative("stop_after_minutes", cfg.stop_after_minutes)
    whole("data.resolution", cfg.data.resolution, 1)
    check_model("model", cfg.model, cfg.data.resolution)
    from ssdd.models import build_model

    if any(b.is_floating_point() for b in build_model(cfg.model, cfg.data.resolution).buffers()):
        raise ConfigError(f"model: {cfg.model.name} keeps running statistics (BatchNorm), which MKDT's unrolled "
                          f"student steps cannot carry; use model.name=convnet_mtt (instance norm)")


def validate_experts(cfg: Any, resume: bool = False) -> None:
    """`ssdd experts`: settings, device, output folder, the teacher and the training split."""
    check_experts_settings(cfg)
    check_device(cfg.device)
    check_writable(cfg.out_dir)
    manifest = teacher_manifest(cfg.teacher)
    if cfg.data.resolution != manifest["resolution"]:
        raise ConfigError(f"data.resolution={cfg.data.resolution}, but teacher {cfg.teacher} expects "
                          f"{manifest['resolution']} px images: set data.resolution={manifest['resolution']}")
    batch_fits("batch_size", cfg.batch_size, check_split(cfg.data, "train_split"))
    start_run("experts", cfg.out_dir)
