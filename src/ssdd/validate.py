"""Validate before work: every command checks, in seconds, everything it can before its first expensive step.

Each stage has one entry point, called on the first line of the command (`validate_teacher`,
`validate_distill`, `validate_evaluate`, `validate_study`). They check that

- every number of the config is finite, and sizes, steps and learning rates are positive (`budget=inf`,
  `optim.batch_size=0`, `optim.lr=nan`, `krr.steps=0` ... are one line each);
- choices are ones the code supports (`save_dtype`, `precision`, `krr.form`, ...), the networks build;
- the device exists (`device=cuda` without a GPU), the output folder can be written;
- the data splits exist and hold uint8 images of at least one pixel (read from the .npz headers, no pixel
  is loaded), the batch fits the data, the budget holds a sample and not more than the source;
- the teacher's manifest is intact and agrees with the data (resolution) and with the distilled sets
  (fingerprints of the teacher and of the source they were distilled from).

Errors are ConfigError / DataError / ArtifactError / BudgetError (ValueErrors): one line naming the key,
value or file and what to do.
"""

from __future__ import annotations

import math
import os
import sys
import zipfile
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ssdd.config import ConfigError, DataConfig, ModelConfig
from ssdd.data.dataset import DataError

SOURCES = ("npz", "torchvision", "folder", "digits")


# ----------------------------------------------------------------------------- numbers and choices
def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be a whole number, at least {minimum}")


def batch_fits(key: str, batch: int, available: int | None, what: str = "source images") -> None:
    """A batch drawn from `available` images holds no more than them (None: the count is not known yet).
    KRR-ST's outer loop draws its real batch with replacement, so a larger one would run, but only by repeating
    images, at a memory cost that grows with the batch (krr.batch_size=1e8 would ask for ~77 GB)."""
    if available is not None and batch > available:
        raise ConfigError(f"{key}={batch} exceeds the {available} {what}; lower {key}")


def positive(key: str, value: Any) -> None:
    if not _number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r}: must be a finite number above 0")


def non_negative(key: str, value: Any) -> None:
    if not _number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key}={value!r}: must be a finite number, 0 or more")


def probability(key: str, value: Any) -> None:
    if not _number(value) or not 0 <= value <= 1:
        raise ConfigError(f"{key}={value!r}: must be a probability in [0, 1]")


def choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: must be one of {', '.join(allowed)}")


def finite_everywhere(cfg: Any, prefix: str = "") -> None:
    """No NaN or inf anywhere in a config (dataclasses, lists of dataclasses or numbers)."""
    for f in fields(cfg):
        _finite_value(f"{prefix}{f.name}", getattr(cfg, f.name))


def _finite_value(key: str, value: Any) -> None:
    if is_dataclass(value) and not isinstance(value, type):
        finite_everywhere(value, f"{key}.")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _finite_value(f"{key}[{i}]", item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value}: must be a finite number")


def _first_line(exc: BaseException) -> str:
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
                          f"cannot be built at {resolution} px: {_first_line(exc)}") from None


# ----------------------------------------------------------------------------- device and output folder
def check_device(name: str, key: str = "device") -> None:
    import torch

    from ssdd.runtime import resolve_device

    text = str(name)
    try:
        device = resolve_device(text)
    except (RuntimeError, ValueError):
        if text.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"{key}={text}: CUDA is not available here (no GPU visible, or a CPU-only torch); "
                              f"use {key}=cpu or {key}=auto") from None
        raise ConfigError(f"{key}={text!r}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}={text}: this machine has {torch.cuda.device_count()} GPU(s) "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")


def check_writable(out_dir: str | Path, key: str = "out_dir") -> None:
    """out_dir is a folder, or can be created, and can be written."""
    if not str(out_dir):
        raise ConfigError(f"{key} is empty: set {key}=FOLDER")
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={out_dir}: exists and is not a folder; choose another {key}")
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={out_dir}: cannot be created, {probe} is a file; choose another {key}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={out_dir}: {probe} is not writable; choose another {key} or fix its permissions")


# ----------------------------------------------------------------------------- data
def npz_arrays(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of a .npz, read from the .npy headers (no pixel is loaded)."""
    from numpy.lib import format as npy

    path = Path(path)
    if not zipfile.is_zipfile(path):
        size = path.stat().st_size
        what = "an empty file" if size == 0 else f"{size} bytes that are not a zip of .npy arrays"
        raise DataError(f"{path}: not a readable .npz archive ({what}); write one with ssdd.data.save_npz or "
                        f"numpy.savez")
    arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as handle:
                    version = npy.read_magic(handle)
                    reader = getattr(npy, "_read_array_header", None)
                    if reader is not None:
                        shape, _, dtype = reader(handle, version)
                    elif version == (1, 0):
                        shape, _, dtype = npy.read_array_header_1_0(handle)
                    else:
                        shape, _, dtype = npy.read_array_header_2_0(handle)
                arrays[name[:-4]] = (tuple(int(s) for s in shape), np.dtype(dtype))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(f"{path}: the archive is corrupt ({_first_line(exc)}); write it again") from None
    return arrays


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(N, H, W) of an image array in one of the layouts the loader accepts; None for any other."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3):
        return shape[0], shape[1], shape[2]
    if len(shape) == 4 and shape[1] in (1, 3):
        return shape[0], shape[2], shape[3]
    return None


def _npz_split(path: Path, split: str, key: str, which: str) -> int:
    arrays = npz_arrays(path)
    splits = sorted(k[2:] for k in arrays if k.startswith("x_"))
    if f"x_{split}" not in arrays:
        raise DataError(f"{path}: split '{split}' does not exist (available: {', '.join(splits) or 'none'}); "
                        f"set {key}.{which}=<one of them>")
    if f"y_{split}" not in arrays:
        raise DataError(f"{path}: array 'y_{split}' (labels of split '{split}') is missing")
    where = f"{path}[{split}]"
    shape, dtype = arrays[f"x_{split}"]
    if dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 pixels in [0, 255], got dtype {dtype}")
    layout = image_layout(shape)
    if layout is None:
        raise DataError(f"{where}: images must have shape (N, H, W, 3) (or (N, H, W), (N, H, W, 1), (N, 3, H, W)), "
                        f"got {shape}")
    n, height, width = layout
    if n == 0:
        raise DataError(f"{where}: the split is empty")
    if height < 1 or width < 1:
        raise DataError(f"{where}: the images are {height}x{width} pixels; every image needs at least one pixel")
    labels_shape, labels_dtype = arrays[f"y_{split}"]
    if not np.issubdtype(labels_dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got dtype {labels_dtype}")
    if math.prod(labels_shape) != n:
        raise DataError(f"{where}: {n} images but {math.prod(labels_shape)} labels")
    return n


def check_split(cfg: DataConfig, which: str = "train_split", key: str = "data") -> int | None:
    """The split `cfg.<which>` exists and looks usable; its number of images (after data.subset for the train
    split) when that is cheap to know, else None."""
    from ssdd.data.loaders import IMAGE_SUFFIXES

    choice(f"{key}.source", cfg.source, SOURCES)
    whole(f"{key}.resolution", cfg.resolution, 1)
    whole(f"{key}.subset", cfg.subset, 0)
    split = getattr(cfg, which)
    count: int | None = None
    if cfg.source == "npz":
        path = Path(cfg.path)
        if not path.is_file():
            raise DataError(f"{path}: file not found; pass {key}.path=FILE.npz, a .npz in ssdd's NumPy format "
                            f"(README, 'Data formats'), or {key}.source=torchvision {key}.name=cifar100 "
                            f"{key}.path=DIR {key}.download=true (other sources: folder, digits)")
        count = _npz_split(path, split, key, which)
    elif cfg.source == "folder":
        from ssdd.data.loaders import folder_class_dirs

        classes = folder_class_dirs(cfg.path, split, key, which)
        count = 0
        for folder in classes:
            files = sum(1 for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"{folder}: empty class, no image files")
            count += files
    elif cfg.source == "digits":
        if split not in ("train", "test"):
            raise DataError(f"digits: split '{split}' does not exist (available: train, test); set {key}.{which}")
    else:
        from ssdd.data.torchvision_sets import TORCHVISION_DATASETS

        spec = TORCHVISION_DATASETS.get(cfg.name)
        if spec is None:
            raise DataError(f"{key}.name={cfg.name!r}: not a torchvision dataset ssdd knows (available: "
                            f"{', '.join(sorted(TORCHVISION_DATASETS))})")
        if split not in spec.split_kwargs:
            raise DataError(f"torchvision {cfg.name}: split '{split}' does not exist (available: "
                            f"{', '.join(spec.split_kwargs)}); set {key}.{which}")
    if count is not None and which == "train_split" and cfg.subset > 0:
        count = min(count, cfg.subset)
    return count


def describe_data(path: str | Path) -> str:
    """`ssdd check`: a .npz (every split checked from its headers, every member against its CRC) or an
    ImageFolder root (every split); one line on what it holds, or DataError."""
    path = Path(path)
    if path.is_dir():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        if not splits:
            raise DataError(f"{path}: no split folders (expected {path}/<split>/<class>/<image>)")
        counts = [f"{s} {check_split(DataConfig(source='folder', path=str(path), train_split=s), 'train_split'):,}"
                  for s in splits]
        return f"{path}: {', '.join(counts)} images"
    if not path.is_file():
        raise DataError(f"{path}: not found")
    arrays = npz_arrays(path)
    splits = sorted(k[2:] for k in arrays if k.startswith("x_"))
    if not splits:
        raise DataError(f"{path}: no x_<split> arrays; not in ssdd's NumPy format (README, 'Data formats')")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: the archive is corrupt ({_first_line(exc)}); write it again") from None
    if broken is not None:
        raise DataError(f"{path}: member {broken} is corrupt (CRC mismatch); write the file again")
    counts = [f"{s} {_npz_split(path, s, 'data', 'train_split'):,}" for s in splits]
    layout = image_layout(arrays[f"x_{splits[0]}"][0])
    size = f" at {layout[1]}x{layout[2]} px" if layout else ""
    return f"{path}: {', '.join(counts)} images{size}"


# ----------------------------------------------------------------------------- teacher artifact
def teacher_manifest(path: str, key: str = "teacher") -> dict[str, Any]:
    """The manifest of the teacher folder a config names, checked (no weights are read)."""
    from ssdd.artifacts import read_manifest
    from ssdd.integrity import verify_teacher_manifest
    from ssdd.teacher.artifact import KIND
    from ssdd.teacher.locate import require_teacher_folder

    require_teacher_folder(path)
    manifest = read_manifest(path, KIND)
    manifest["function_fingerprint"] = verify_teacher_manifest(path, manifest)
    return manifest


# ----------------------------------------------------------------------------- shared settings
def check_probe(cfg: Any, key: str = "probe") -> None:
    whole(f"{key}.iterations", cfg.iterations, 1)
    whole(f"{key}.batch_size", cfg.batch_size, 1)
    positive(f"{key}.lr", cfg.lr)
    non_negative(f"{key}.momentum", cfg.momentum)
    non_negative(f"{key}.weight_decay", cfg.weight_decay)


def _channels_last(key: str, value: Any) -> None:
    from ssdd.runtime import channels_last

    try:
        channels_last(value, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _start(stage: str, out_dir: str) -> None:
    """The checks passed: remember the run (for interrupt messages) and clean its stale temporary files."""
    from ssdd.runguard import clean_stale_tmp, register_run

    register_run(stage, out_dir)
    clean_stale_tmp(out_dir)


# ----------------------------------------------------------------------------- ssdd teacher
def check_teacher_settings(cfg: Any) -> int:
    """Everything of a teacher config that needs no file; returns the backbone's feature dimension."""
    finite_everywhere(cfg)
    choice("precision", cfg.precision, ("auto", "bf16", "fp32"))
    _channels_last("channels_last", cfg.channels_last)
    choice("save_dtype", cfg.save_dtype, ("float32", "float16"))
    whole("stop_after_epochs", cfg.stop_after_epochs, 0)
    optim = cfg.optim
    whole("optim.epochs", optim.epochs, 1)
    whole("optim.batch_size", optim.batch_size, 1)
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


def validate_teacher(cfg: Any, resume: bool = False) -> None:
    """`ssdd teacher`: settings, device, output folder, both splits, the batch against the training images."""
    check_teacher_settings(cfg)
    check_device(cfg.device)
    check_writable(cfg.out_dir)
    n_train = check_split(cfg.data, "train_split")
    check_split(cfg.data, "test_split")  # the linear probe at the end reads it: fail now, not after training
    if n_train is not None and cfg.optim.batch_size > n_train:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} exceeds the {n_train} training images of "
                          f"{cfg.data.path}; lower optim.batch_size")
    _start("teacher", cfg.out_dir)


# ----------------------------------------------------------------------------- ssdd distill
LOOP_METHODS = ("krr_st", "boost")


def check_distill_settings(cfg: Any) -> None:
    """Everything of a distillation config that needs no file."""
    import ssdd.distill.run  # noqa: F401  (registers the methods)
    from ssdd.distill.registry import get_method

    finite_everywhere(cfg)
    try:
        get_method(cfg.method)
    except ValueError as exc:
        raise ConfigError(f"method={cfg.method!r}: {exc}") from None
    positive("budget", cfg.budget)
    if not cfg.count_targets and cfg.method != "krr_st":
        raise ConfigError(f"count_targets=false (KRR-ST's paper convention) applies to krr_st only, not {cfg.method}")
    whole("log_every", cfg.log_every, 1)
    whole("checkpoint_every", cfg.checkpoint_every, 1)
    whole("stop_after_steps", cfg.stop_after_steps, 0)
    whole("kmeans_iterations", cfg.kmeans_iterations, 1)
    whole("data.resolution", cfg.data.resolution, 1)
    if cfg.method == "mkdt":
        check_mkdt_settings(cfg.mkdt)
    if cfg.method == "high_loss" and not cfg.mkdt.experts:
        raise ConfigError("method=high_loss needs mkdt.experts=FOLDER: expert trajectories from `ssdd experts` "
                          "made with the same teacher and source (their final errors rank the images)")
    if cfg.method not in LOOP_METHODS:
        return
    krr, pool = cfg.krr, cfg.pool
    whole("krr.steps", krr.steps, 1)
    whole("krr.batch_size", krr.batch_size, 1)
    positive("krr.lr", krr.lr)
    non_negative("krr.final_lr_ratio", krr.final_lr_ratio)
    non_negative("krr.ridge", krr.ridge)
    choice("krr.form", krr.form, ("auto", "primal", "dual"))
    choice("krr.solve_dtype", krr.solve_dtype, ("auto", "float32", "float64"))
    _channels_last("krr.channels_last", krr.channels_last)
    whole("krr.real_crop_padding", krr.real_crop_padding, 0)
    whole("pool.size", pool.size, 1)
    whole("pool.max_steps", pool.max_steps, 2)
    whole("pool.batch_size", pool.batch_size, 0)
    positive("pool.lr", pool.lr)
    non_negative("pool.momentum", pool.momentum)
    non_negative("pool.weight_decay", pool.weight_decay)
    check_model("krr.model", krr.model, cfg.data.resolution)
    if cfg.method == "boost":
        b = cfg.boost
        positive("boost.approx_lr", b.approx_lr)
        whole("boost.approx_steps", b.approx_steps, 0)
        whole("boost.approx_hidden", b.approx_hidden, 1)
        non_negative("boost.basis_lr_scale", b.basis_lr_scale)


def check_mkdt_settings(mk: Any) -> None:
    if not mk.experts:
        raise ConfigError("method=mkdt needs mkdt.experts=FOLDER: expert trajectories from `ssdd experts` "
                          "made with the same teacher and source")
    whole("mkdt.iterations", mk.iterations, 1)
    whole("mkdt.syn_steps", mk.syn_steps, 1)
    whole("mkdt.expert_epochs", mk.expert_epochs, 1)
    whole("mkdt.max_start_epoch", mk.max_start_epoch, 1)
    whole("mkdt.batch_syn", mk.batch_syn, 0)
    for key in ("lr_images", "lr_targets", "lr_lr", "init_lr"):
        positive(f"mkdt.{key}", getattr(mk, key))
    non_negative("mkdt.momentum", mk.momentum)
    choice("mkdt.init", mk.init, ("high_loss", "random"))


def check_experts_folder(cfg: Any, teacher: dict[str, Any], available: int | None = None) -> None:
    """mkdt.experts is an intact expert-trajectories folder made with this teacher, with enough epochs."""
    from ssdd.artifacts import ArtifactError
    from ssdd.experts.artifact import load_experts

    try:
        experts = load_experts(cfg.mkdt.experts)
    except (FileNotFoundError, ArtifactError) as exc:
        raise ConfigError(f"mkdt.experts: {_first_line(exc)}") from None
    if experts.manifest.get("teacher", {}).get("function_fingerprint") != teacher.get("function_fingerprint"):
        raise ConfigError(f"mkdt.experts={cfg.mkdt.experts}: made with another teacher "
                          f"({experts.manifest.get('teacher', {}).get('path', '?')}), not {cfg.teacher}")
    trained_on = experts.manifest.get("source", {}).get("images")
    if available is not None and trained_on is not None and int(trained_on) != available:
        raise ConfigError(f"mkdt.experts={cfg.mkdt.experts}: trained on {trained_on} source images "
                          f"({experts.manifest.get('source', {}).get('name', '?')}), this source has {available}")
    need = cfg.mkdt.max_start_epoch - 1 + cfg.mkdt.expert_epochs
    if cfg.method == "mkdt" and need > experts.epochs:
        raise ConfigError(f"mkdt.max_start_epoch={cfg.mkdt.max_start_epoch} with mkdt.expert_epochs="
                          f"{cfg.mkdt.expert_epochs} needs {need} expert epochs; {cfg.mkdt.experts} has "
                          f"{experts.epochs}")


def check_budget_fits(cfg: Any, resolution: int, feature_dim: int, available: int | None) -> None:
    """The budget holds at least one sample and no more samples than the source has (BudgetError)."""
    from ssdd.distill.budget import samples_for_budget

    shape = (3, resolution, resolution)
    if cfg.method == "boost":
        from ssdd.distill.boost import boost_samples, check_boost_config

        check_boost_config(cfg.boost, shape, feature_dim, available if available is not None else 2**62)
        boost_samples(cfg.boost, shape, feature_dim, cfg.budget, available=available)
    elif cfg.method == "random_supervised":
        samples_for_budget(cfg.budget, shape, 1, True, available=available)
    elif cfg.method in ("krr_st", "mkdt", "random", "kmeans", "high_loss"):
        samples_for_budget(cfg.budget, shape, feature_dim, cfg.count_targets, available=available)


def validate_distill(cfg: Any, resume: bool = False) -> None:
    """`ssdd distill`: settings, device, output folder, the teacher (intact, same resolution as the data), the
    training split, and the budget against the teacher's d and the source size."""
    check_distill_settings(cfg)
    check_device(cfg.device)
    check_writable(cfg.out_dir)
    manifest = teacher_manifest(cfg.teacher)
    resolution = manifest["resolution"]
    if cfg.data.resolution != resolution:
        raise ConfigError(f"data.resolution={cfg.data.resolution}, but teacher {cfg.teacher} expects {resolution} px "
                          f"images: set data.resolution={resolution}")
    available = check_split(cfg.data, "train_split")
    if cfg.method in LOOP_METHODS:
        batch_fits("krr.batch_size", cfg.krr.batch_size, available)
    if manifest.get("feature_dim"):
        check_budget_fits(cfg, resolution, int(manifest["feature_dim"]), available)
    if cfg.method in ("mkdt", "high_loss"):
        check_experts_folder(cfg, manifest, available)
    _start("distill", cfg.out_dir)


# ----------------------------------------------------------------------------- ssdd experts
def check_experts_settings(cfg: Any) -> None:
    """Everything of an experts config that needs no file."""
    finite_everywhere(cfg)
    whole("num_experts", cfg.num_experts, 1)
    whole("epochs", cfg.epochs, 1)
    whole("batch_size", cfg.batch_size, 1)
    positive("lr", cfg.lr)
    non_negative("momentum", cfg.momentum)
    non_negative("weight_decay", cfg.weight_decay)
    choice("augment", cfg.augment, ("none", "crop_flip"))
    whole("stop_after_experts", cfg.stop_after_experts, 0)
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
    _start("experts", cfg.out_dir)


# ----------------------------------------------------------------------------- ssdd evaluate
def check_evaluate_settings(cfg: Any) -> None:
    """Everything of an evaluation config that needs no file."""
    finite_everywhere(cfg)
    _channels_last("channels_last", cfg.channels_last)
    unknown = set(cfg.modes) - {"finetune", "linear_probe"}
    if unknown or not cfg.modes:
        raise ConfigError(f"modes must be a non-empty subset of [finetune, linear_probe], got {cfg.modes}")
    whole("seeds", cfg.seeds, 1)
    whole("cka_images", cfg.cka_images, 0)
    if not cfg.models:
        raise ConfigError("models=[]: name at least one architecture, e.g. models=[{name: convnet}]")
    p = cfg.pretrain
    whole("pretrain.epochs", p.epochs, 1)
    whole("pretrain.max_iterations", p.max_iterations, 0)
    whole("pretrain.batch_size", p.batch_size, 1)
    positive("pretrain.lr", p.lr)
    non_negative("pretrain.momentum", p.momentum)
    non_negative("pretrain.weight_decay", p.weight_decay)
    check_supervised_pretrain(p.supervised)
    if cfg.full_data.enabled:
        f = cfg.full_data
        whole("full_data.epochs", f.epochs, 1)
        whole("full_data.batch_size", f.batch_size, 1)
        whole("full_data.crop_padding", f.crop_padding, 0)
        positive("full_data.lr", f.lr)
        non_negative("full_data.momentum", f.momentum)
        non_negative("full_data.weight_decay", f.weight_decay)
    if "finetune" in cfg.modes:
        t = cfg.finetune
        whole("finetune.iterations", t.iterations, 1)
        whole("finetune.small_iterations", t.small_iterations, 1)
        whole("finetune.small_threshold", t.small_threshold, 0)
        choice("finetune.small_by", t.small_by, ("role", "size"))
        whole("finetune.batch_size", t.batch_size, 1)
        whole("finetune.crop_padding", t.crop_padding, 0)
        positive("finetune.lr", t.lr)
        non_negative("finetune.momentum", t.momentum)
        non_negative("finetune.weight_decay", t.weight_decay)
    if "linear_probe" in cfg.modes:
        check_probe(cfg.probe)
    from ssdd.evaluation.validation import check_validation

    check_validation(cfg.validation.fraction, cfg.validation.seed)


def check_supervised_pretrain(s: Any) -> None:
    """pretrain.supervised: the recipe of sets with class labels (ssdd.evaluation.supervised)."""
    choice("pretrain.supervised.recipe", s.recipe, ("krr_st", "same"))
    choice("pretrain.supervised.augment", s.augment, ("dsa", "none"))
    positive("pretrain.supervised.lr", s.lr)
    non_negative("pretrain.supervised.momentum", s.momentum)
    non_negative("pretrain.supervised.weight_decay", s.weight_decay)
    probability("pretrain.supervised.lr_drop_at", s.lr_drop_at)
    positive("pretrain.supervised.lr_drop", s.lr_drop)


# the finished rows of earlier runs that a resumed evaluation leaves out (fewer seeds or sets), kept beside
# results.json for a later resume that asks for them again (ssdd.evaluation.protocol)
SET_ASIDE = "results.set_aside.json"


def _check_out_dir_for_evaluation(out_dir: Path, resume: bool) -> None:
    from ssdd.runfolder import claim

    claim(out_dir, "evaluate", resume)  # never another run's folder; results.json only with --resume
    if (out_dir / SET_ASIDE).exists() and not (out_dir / "results.json").exists():
        raise FileExistsError(f"{out_dir} holds {SET_ASIDE} (cells of an earlier evaluation) but no results.json; "
                              f"move it away to start afresh, or choose another out_dir")


def _note(text: str) -> None:
    print(f"ssdd evaluate: note: {text}", file=sys.stderr)


def _check_sets(cfg: Any, teacher: dict[str, Any], source_cfg: DataConfig, allow_mismatch: bool) -> None:
    """Every distilled set: its manifest, its teacher (fingerprints) and its source (fingerprint)."""
    from ssdd.artifacts import ArtifactError
    from ssdd.distill.artifact import load_distilled
    from ssdd.distill.interop import declared_source_mismatch, evaluation_note

    override = "or pass --allow-mismatch to score it anyway"
    by_source: list[tuple[str, dict[str, Any]]] = []
    for path in cfg.distilled:
        if not Path(path).is_dir():
            raise ArtifactError(f"{path}: no distilled set there; pass --distilled with folders written by "
                                f"`ssdd distill` or `ssdd import-distilled`")
        manifest = load_distilled(path).manifest  # tensors read and checked too: a damaged set fails before work
        recorded = manifest.get("teacher") if isinstance(manifest.get("teacher"), dict) else {}
        if evaluation_note(manifest) is None:
            same = recorded.get("fingerprint") == teacher.get("fingerprint")
            function = recorded.get("function_fingerprint")
            if same and function is not None and function != teacher["function_fingerprint"]:
                same = False
            if not same:
                text = (f"{path} was distilled with teacher {recorded.get('path')} (fingerprint "
                        f"{recorded.get('fingerprint')}), not the evaluation teacher {cfg.teacher} (fingerprint "
                        f"{teacher.get('fingerprint')}): rows would not be comparable")
                if not allow_mismatch:
                    raise ValueError(f"{text}; pass teacher=<its teacher>, {override}")
                _note(f"{text} (scored anyway: --allow-mismatch)")
        shape = manifest.get("image_shape")
        if isinstance(shape, list) and shape and shape[-1] != teacher["resolution"]:
            raise ValueError(f"{path} holds {shape[-1]} px images; the teacher is {teacher['resolution']} px")
        declared = declared_source_mismatch(path, manifest, source_cfg)  # imported sets: their declared source
        if declared is not None:
            if not allow_mismatch:
                raise ValueError(f"{declared}, {override}")
            _note(f"{declared} (scored anyway: --allow-mismatch)")
        source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
        if source.get("fingerprint"):
            by_source.append((str(path), manifest))
        elif manifest.get("origin") is None:
            _note(f"{path}: its manifest records no source fingerprint; the source it was distilled from is unchecked")
    if not by_source:
        return
    if allow_mismatch:
        _note("--allow-mismatch: the sources of the distilled sets are not checked")
        return
    from ssdd.data import load_split
    from ssdd.data.loaders import source_description

    try:
        full = load_split(replace(source_cfg, subset=0), source_cfg.train_split, cfg.seed)
    except (DataError, OSError) as exc:
        _note(f"the evaluation source cannot be read ({_first_line(exc)}), so the sources of the distilled sets are "
              f"unchecked")
        return
    cache: dict[tuple[int, int], str] = {}
    for path, manifest in by_source:
        config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        subset, seed = int(data.get("subset") or 0), int(config.get("seed") or 0)
        key = (subset, seed if subset else 0)
        if key not in cache:
            cache[key] = (full.subset(subset, seed) if subset else full).fingerprint()
        recorded = manifest["source"]["fingerprint"]
        if recorded != cache[key]:
            raise ValueError(f"{path} was distilled from source {manifest['source'].get('name')} (fingerprint "
                             f"{recorded}), not from the evaluation source {source_description(source_cfg)} "
                             f"[{source_cfg.train_split}] (fingerprint {cache[key]}): rows would not be comparable; "
                             f"pass source.path=<its source>, {override}")


def validate_evaluate(cfg: Any, resume: bool = False, allow_mismatch: bool = False) -> None:
    """`ssdd evaluate`: settings, device, the output folder (never another run's), the teacher, the networks,
    every split it will read, and every distilled set against the teacher and the source."""
    from ssdd.runguard import check_inputs

    check_evaluate_settings(cfg)
    check_device(cfg.device)
    check_writable(cfg.out_dir)
    out_dir = Path(cfg.out_dir)
    _check_out_dir_for_evaluation(out_dir, resume)
    teacher = teacher_manifest(cfg.teacher)
    resolution = teacher["resolution"]
    for i, model in enumerate(cfg.models):
        check_model(f"models[{i}]", model, resolution)
    source_cfg = replace(cfg.source, resolution=resolution)
    if cfg.full_data.enabled or cfg.full_data.same_recipe:
        check_split(source_cfg, "train_split", "source")
    if cfg.cka_images > 0:
        check_split(source_cfg, "test_split", "source")
    for i, target in enumerate(cfg.targets):
        target_cfg = replace(target, resolution=resolution)
        check_split(target_cfg, "train_split", f"targets[{i}]")
        check_split(target_cfg, "test_split", f"targets[{i}]")
    _check_sets(cfg, teacher, source_cfg, allow_mismatch)
    _start("evaluate", cfg.out_dir)
    check_inputs(out_dir, resume, {"teacher": teacher.get("fingerprint"),
                                   "teacher_function": teacher["function_fingerprint"]},
                 {"teacher": f"teacher ({cfg.teacher})", "teacher_function": f"teacher's function ({cfg.teacher})"})


# ----------------------------------------------------------------------------- ssdd reproduce
def validate_study(study: Any) -> None:
    """`ssdd reproduce`: every stage's settings and inputs before the first stage runs (the teacher a study
    trains itself is checked by its settings; the stages after it by theirs and their data)."""
    from ssdd.config import load_config
    from ssdd.distill.config import DistillConfig
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.teacher.config import TeacherConfig

    check_device(str(study.device))
    check_writable(study.out_dir)
    name = str(study.name)
    if name and (not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or not name.isascii()
                 or name.startswith(".") or name.lower() in ("teacher", "experts", "distill", "evaluate")):
        raise ConfigError(f"name='{name}': a study's name is a folder inside out_dir: letters, digits, '-', '_' "
                          f"and '.', not a stage folder (teacher, experts, distill, evaluate)")
    common = [f"seed={study.seed}", f"device={study.device}"]
    resolution: int | None = None
    feature_dim: int | None = None
    if study.teacher.path:
        manifest = teacher_manifest(study.teacher.path, "teacher.path")
        resolution, feature_dim = manifest["resolution"], manifest.get("feature_dim")
    elif study.teacher.config:
        cfg = load_config(TeacherConfig, study.teacher.config, [*common, *study.teacher.overrides])
        try:
            feature_dim = check_teacher_settings(cfg)
            check_split(cfg.data, "train_split")
            check_split(cfg.data, "test_split")
        except ValueError as exc:
            raise type(exc)(f"teacher stage: {exc}") from None
        resolution = cfg.data.resolution
    if study.experts.config:
        from ssdd.experts.config import ExpertsConfig

        cfg = load_config(ExpertsConfig, study.experts.config, [*common, *study.experts.overrides])
        try:
            check_experts_settings(cfg)
            batch_fits("batch_size", cfg.batch_size, check_split(cfg.data, "train_split"))
        except ValueError as exc:
            raise type(exc)(f"experts stage: {exc}") from None
    for spec in study.distill:
        for budget in [*spec.budgets] or [None]:
            extra = [f"budget={budget!r}"] if budget is not None else []
            extra += [f"name={spec.name}"] if spec.name else []
            cfg = load_config(DistillConfig, spec.config or None, [*common, *spec.overrides, *extra])
            label = f"distill stage {spec.name or cfg.method}@{cfg.budget:g}"
            try:
                check_distill_settings(cfg)
                if resolution is not None and cfg.data.resolution != resolution:
                    raise ConfigError(f"data.resolution={cfg.data.resolution}, but the teacher is {resolution} px: "
                                      f"set data.resolution={resolution}")
                available = check_split(cfg.data, "train_split")
                if cfg.method in LOOP_METHODS:
                    batch_fits("krr.batch_size", cfg.krr.batch_size, available)
                if feature_dim:
                    check_budget_fits(cfg, cfg.data.resolution, feature_dim, available)
            except ValueError as exc:
                raise type(exc)(f"{label}: {exc}") from None
    if study.evaluate.config:
        cfg = load_config(EvaluateConfig, study.evaluate.config, [*common, *study.evaluate.overrides])
        try:
            check_evaluate_settings(cfg)
            for i, target in enumerate(cfg.targets):
                target_cfg = replace(target, resolution=resolution or target.resolution)
                check_split(target_cfg, "train_split", f"targets[{i}]")
                check_split(target_cfg, "test_split", f"targets[{i}]")
        except ValueError as exc:
            raise type(exc)(f"evaluate stage: {exc}") from None
