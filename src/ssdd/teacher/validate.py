"""`ssdd teacher`'s checks before work (settings, device, output folder, both splits), and the check of a
teacher folder that the later stages read (`teacher_manifest`)."""

from __future__ import annotations

from typing import Any

from ssdd.config import ConfigError
from ssdd.data.validate import check_split, has_labels
from ssdd.run.checks import (
    auto_on_off,
    batch_fits,
    check_device,
    check_model,
    check_probe,
    choice,
    non_negative,
    positive,
    probability,
    start_run,
    well_formed,
    whole,
)
from ssdd.run.folder import check_writable


def teacher_manifest(path: str, key: str = "teacher") -> dict[str, Any]:
    """The manifest of the teacher folder a config names, checked (no weights are read)."""
    from ssdd.artifacts.files import read_manifest
    from ssdd.artifacts.integrity import verify_teacher_manifest
    from ssdd.teacher.artifact import KIND
    from ssdd.teacher.locate import require_teacher_folder

    require_teacher_folder(path)
    manifest = read_manifest(path, KIND)
    manifest["function_fingerprint"] = verify_teacher_manifest(path, manifest)
    return manifest


def training_images(cfg: Any) -> str:
    """What a teacher's batch is drawn from, as its batch-size error names it."""
    from ssdd.data.loaders import source_description

    return f"training images of {source_description(cfg.data)} [{cfg.data.train_split}]"


def check_teacher_settings(cfg: Any) -> int:
    """Everything of a teacher config that needs no file; returns the backbone's feature dimension."""
    well_formed(cfg)
    choice("precision", cfg.precision, ("auto", "bf16", "fp32"))
    for key in ("channels_last", "fast", "compile"):  # each auto | on | off
        auto_on_off(key, getattr(cfg, key))
    choice("save_dtype", cfg.save_dtype, ("float32", "float16"))
    whole("stop_after_epochs", cfg.stop_after_epochs, 0)
    non_negative("stop_after_minutes", cfg.stop_after_minutes)
    optim = cfg.optim
    whole("optim.epochs", optim.epochs, 1)
    whole("optim.batch_size", optim.batch_size, 2)  # BatchNorm and the cross-correlation need 2 images or more
    whole("optim.warmup_epochs", optim.warmup_epochs, 0)
    positive("optim.lr", optim.lr)
    positive("optim.monitor_lr", optim.monitor_lr)
    for name in ("weight_decay", "momentum", "lars_eta", "min_lr", "warmup_start_lr"):
        if hasattr(optim, name):
            non_negative(f"optim.{name}", getattr(optim, name))
    non_negative("loss.lambda_offdiag", cfg.loss.lambda_offdiag)
    positive("loss.scale", cfg.loss.scale)
    if not cfg.projector:
        raise ConfigError("projector=[]: needs at least one layer size, e.g. projector=[2048,2048,2048]")
    for i, size in enumerate(cfg.projector):
        whole(f"projector[{i}]", size, 1)
    for name in ("view1", "view2"):
        view = getattr(cfg.augment, name)
        key = f"augment.{name}"
        if not 0 < view.crop_scale_min <= view.crop_scale_max <= 1:
            raise ConfigError(f"{key}.crop_scale_min/max={view.crop_scale_min}/{view.crop_scale_max}: need "
                              f"0 < min <= max <= 1")
        if len(view.jitter) != 4:
            raise ConfigError(f"{key}.jitter={view.jitter}: must list 4 strengths (brightness, contrast, "
                              f"saturation, hue)")
        for i, strength in enumerate(view.jitter):
            non_negative(f"{key}.jitter[{i}]", strength)
        for p in ("jitter_p", "grayscale_p", "solarize_p", "flip_p"):
            probability(f"{key}.{p}", getattr(view, p))
        choice(f"{key}.interpolation", view.interpolation, ("bicubic", "bilinear"))
    check_probe(cfg.probe)
    whole("probe_every", cfg.probe_every, 0)
    whole("data.resolution", cfg.data.resolution, 1)
    return check_model("model", cfg.model, cfg.data.resolution)


def check_teacher_data(cfg: Any) -> int | None:
    """The training split, and the test split the linear probe at the end reads (fail now, not after training;
    without labels there is no probe and no test split is read); the training images' count when known."""
    n_train = check_split(cfg.data, "train_split")
    if has_labels(cfg.data, "train_split"):
        check_split(cfg.data, "test_split")
    return n_train


def validate_teacher(cfg: Any, resume: bool = False) -> None:
    """`ssdd teacher`: settings, device, output folder, both splits, the batch against the training images."""
    check_teacher_settings(cfg)
    check_device(cfg.device)
    check_writable(cfg.out_dir)
    n_train = check_teacher_data(cfg)
    # npz and folder: known now; digits and torchvision: once loaded, before anything is written (teacher/train.py)
    batch_fits("optim.batch_size", cfg.optim.batch_size, n_train, training_images(cfg))
    start_run("teacher", cfg.out_dir)
