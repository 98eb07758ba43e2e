"""`ssdd distill`'s checks before work: the settings (the common ones here, the method's own by its `check`
hook), device, output folder (`run.folder.claim`, called first, refuses another run's), the teacher (intact,
same resolution as the data), the training split, the budget against the teacher's d and the source size (the
method's budget rule), and the files the method reads besides (its `check_files` hook)."""

from __future__ import annotations

from typing import Any

from ssdd.config import ConfigError
from ssdd.data.validate import check_split
from ssdd.distill.registry import PLUGIN_HINT, DistillMethod, find_method, methods_where
from ssdd.run.checks import (
    auto_on_off,
    batch_fits,
    check_device,
    check_model,
    choice,
    non_negative,
    positive,
    sgd_settings,
    start_run,
    well_formed,
    whole,
)
from ssdd.run.folder import check_writable
from ssdd.run.runtime import PRECISIONS
from ssdd.teacher.validate import teacher_manifest


def method_of(cfg: Any) -> DistillMethod:
    """The configured method (ConfigError naming the ones `ssdd distill` runs: not a method whose sets another
    command writes, such as `imported`)."""
    method = find_method(cfg.method)
    if method is not None and method.written_by is None:
        return method
    runnable = ", ".join(methods_where(lambda m: m.written_by is None))
    if method is not None:
        raise ConfigError(f"method={cfg.method!r}: its sets are written by {method.written_by}, not distilled; "
                          f"`ssdd distill` runs {runnable}")
    raise ConfigError(f"method={cfg.method!r}: unknown distillation method (available: {runnable}; {PLUGIN_HINT})")


def check_distill_settings(cfg: Any) -> None:
    """Everything of a distillation config that needs no file."""
    well_formed(cfg)
    method = method_of(cfg)
    positive("budget", cfg.budget)
    if not cfg.count_targets and not method.targets_optional:
        allowed = ", ".join(methods_where(lambda m: m.targets_optional)) or "no method"
        raise ConfigError(f"count_targets=false (KRR-ST's paper convention) applies to {allowed} only, "
                          f"not {cfg.method}")
    whole("log_every", cfg.log_every, 1)
    whole("checkpoint_every", cfg.checkpoint_every, 1)
    whole("stop_after_steps", cfg.stop_after_steps, 0)
    non_negative("stop_after_minutes", cfg.stop_after_minutes)
    whole("kmeans_iterations", cfg.kmeans_iterations, 1)
    whole("data.resolution", cfg.data.resolution, 1)
    if method.outer_loop:
        check_outer_loop_settings(cfg)
    method.check(cfg)


def check_outer_loop_settings(cfg: Any) -> None:
    """The shared outer loop's settings (outer.*, pool.*), for the methods that run it."""
    outer, pool = cfg.outer, cfg.pool
    whole("outer.steps", outer.steps, 1)
    whole("outer.batch_size", outer.batch_size, 1)
    positive("outer.lr", outer.lr)
    non_negative("outer.final_lr_ratio", outer.final_lr_ratio)
    non_negative("outer.ridge", outer.ridge)
    choice("outer.form", outer.form, ("auto", "primal", "dual"))
    choice("outer.solve_dtype", outer.solve_dtype, ("auto", "float32", "float64"))
    auto_on_off("outer.channels_last", outer.channels_last)
    for key in ("fast", "teacher_cache", "compile"):
        auto_on_off(f"outer.{key}", getattr(outer, key))
    choice("outer.precision", outer.precision, tuple(PRECISIONS))
    choice("outer.teacher_precision", outer.teacher_precision, tuple(PRECISIONS))
    whole("outer.real_crop_padding", outer.real_crop_padding, 0)
    whole("pool.size", pool.size, 1)
    whole("pool.max_steps", pool.max_steps, 2)
    whole("pool.batch_size", pool.batch_size, 0)
    sgd_settings("pool", pool)
    check_model("outer.model", outer.model, cfg.data.resolution)


def normalise_distill(cfg: Any) -> None:
    """Accepted spellings of the method's settings, fixed in place (after check_distill_settings)."""
    method_of(cfg).normalise(cfg)


def check_budget_fits(cfg: Any, resolution: int, feature_dim: int, available: int | None) -> None:
    """The budget holds at least one sample and no more samples than the source has (BudgetError), by the
    method's budget rule; settings that need the image shape or d are checked there too."""
    method = method_of(cfg)
    if method.samples is not None:
        method.samples(cfg, (3, resolution, resolution), feature_dim, available)


def check_source(cfg: Any) -> int | None:
    """The training split the method reads (with labels where it needs them) and, for the outer loop, that its
    real batch fits; the number of source images when that is cheap to know."""
    method = method_of(cfg)
    available = check_split(cfg.data, "train_split", needs_labels=f"method={cfg.method}" if method.needs_labels else "")
    check_source_fits(cfg, available)
    return available


def check_source_fits(cfg: Any, available: int | None) -> None:
    """The real batch of a method that runs the outer loop holds no more than the source's images (None: the
    count is known only once the source is loaded, e.g. torchvision and digits)."""
    if method_of(cfg).outer_loop:
        batch_fits("outer.batch_size", cfg.outer.batch_size, available)


def check_processes(cfg: Any, world_size: int) -> None:
    """Under torchrun, a method that splits each real batch over the processes needs a row for each."""
    if method_of(cfg).parallel and cfg.outer.batch_size < world_size:
        raise ConfigError(f"outer.batch_size {cfg.outer.batch_size} is smaller than the {world_size} processes "
                          f"that share each real batch")


def validate_distill(cfg: Any, resume: bool = False) -> None:
    """`ssdd distill`: settings, device, output folder, the teacher (intact, same resolution as the data), the
    training split, the budget against the teacher's d and the source size, and the method's other inputs."""
    check_distill_settings(cfg)
    normalise_distill(cfg)
    check_device(cfg.device)
    check_writable(cfg.out_dir)
    manifest = teacher_manifest(cfg.teacher)
    resolution = manifest["resolution"]
    if cfg.data.resolution != resolution:
        raise ConfigError(f"data.resolution={cfg.data.resolution}, but teacher {cfg.teacher} expects {resolution} px "
                          f"images: set data.resolution={resolution}")
    available = check_source(cfg)
    if manifest.get("feature_dim"):
        check_budget_fits(cfg, resolution, int(manifest["feature_dim"]), available)
    method_of(cfg).check_files(cfg, manifest, available)
    start_run("distill", cfg.out_dir)
