"""`ssdd reproduce`'s checks before work: every stage's settings and inputs before the first stage runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ssdd.config import ConfigError, DataConfig
from ssdd.data.dataset import DataError
from ssdd.data.loaders import same_data, source_description
from ssdd.data.validate import check_split
from ssdd.distill.registry import find_method
from ssdd.distill.validate import check_budget_fits, check_distill_settings, check_source, normalise_distill
from ssdd.evaluation.cell import set_label
from ssdd.evaluation.validate import check_evaluate_settings, check_targets
from ssdd.experts.validate import check_experts_settings
from ssdd.run.checks import batch_fits, check_device
from ssdd.run.folder import check_writable
from ssdd.teacher.validate import check_teacher_data, check_teacher_settings, teacher_manifest


def _same_source(data: DataConfig, source: DataConfig) -> bool:
    """Whether a distill stage reads the evaluation's source (a subset of it included), as the evaluation checks
    it: by the fingerprints of the whole training splits where the settings name different files."""
    if same_data(data, source):
        return True
    from ssdd.data import load_split

    def whole(cfg: DataConfig) -> str:
        return load_split(replace(cfg, subset=0, resolution=data.resolution), cfg.train_split).fingerprint()

    try:
        return whole(data) == whole(source)
    except (DataError, OSError):
        return True  # unreadable: the stage's own check of its split says so


def _stage_config(schema: type, config: str, overrides: list[str], stage: str) -> Any:
    """A stage's config; its error names the stage (ConfigError)."""
    from ssdd.config import load_config

    try:
        return load_config(schema, config or None, overrides)
    except ValueError as exc:
        raise type(exc)(f"{stage} stage ({config or 'defaults'}): {exc}") from None


def validate_study(study: Any, dry_run: bool = False) -> None:
    """`ssdd reproduce`: every stage's settings and inputs before the first stage runs (the teacher a study
    trains itself is checked by its settings; the stages after it by theirs and their data)."""
    from ssdd.distill.config import DistillConfig
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.teacher.config import TeacherConfig

    check_device(str(study.device))
    if not dry_run:  # a dry run only reads
        check_writable(study.out_dir)
    name = str(study.name)
    if name and (not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or not name.isascii()
                 or name.startswith(".") or name.lower() in ("teacher", "experts", "distill", "evaluate")):
        raise ConfigError(f"name='{name}': a study's name is a folder inside out_dir: letters, digits, '-', '_' "
                          f"and '.', not a stage folder (teacher, experts, distill, evaluate)")
    for i, spec in enumerate(study.distill):
        name = str(spec.name)
        if name and ("/" in name or "\\" in name or name.startswith(".")):
            raise ConfigError(f"distill[{i}].name={spec.name!r}: a set's name is part of its folder's name inside "
                              f"out_dir: no '/' or '\\', and not starting with '.'")

    common = [f"seed={study.seed}", f"device={study.device}"]
    resolution: int | None = None
    feature_dim: int | None = None
    if study.teacher.path:
        manifest = teacher_manifest(study.teacher.path, "teacher.path")
        resolution, feature_dim = manifest["resolution"], manifest.get("feature_dim")
    elif study.teacher.config:
        cfg = _stage_config(TeacherConfig, study.teacher.config, [*common, *study.teacher.overrides], "teacher")
        try:
            feature_dim = check_teacher_settings(cfg)
            check_teacher_data(cfg)
        except ValueError as exc:
            raise type(exc)(f"teacher stage: {exc}") from None
        resolution = cfg.data.resolution
    if study.experts.config:
        from ssdd.experts.config import ExpertsConfig

        cfg = _stage_config(ExpertsConfig, study.experts.config, [*common, *study.experts.overrides], "experts")
        try:
            check_experts_settings(cfg)
            batch_fits("batch_size", cfg.batch_size, check_split(cfg.data, "train_split"))
        except ValueError as exc:
            raise type(exc)(f"experts stage: {exc}") from None
    evaluation = _stage_config(EvaluateConfig, study.evaluate.config, [*common, *study.evaluate.overrides],
                               "evaluate") if study.evaluate.config else None
    source = evaluation.source if evaluation is not None else None
    made: list[str] = []  # the labels of the sets, as the evaluation will name them
    for i, spec in enumerate(study.distill):
        for budget in [*spec.budgets] or [None]:
            extra = [f"budget={budget!r}"] if budget is not None else []
            extra += [f"name={spec.name}"] if spec.name else []
            cfg = _stage_config(DistillConfig, spec.config, [*common, *spec.overrides, *extra], f"distill[{i}]")
            made_label = set_label(cfg.name or cfg.method, cfg.budget, not cfg.count_targets)
            label = f"distill stage {made_label}"
            if made_label in made and study.evaluate.config:  # (without an evaluation, their folders differ)
                raise ConfigError(f"two distill entries make the set {made_label}: the evaluation could not tell "
                                  f"their rows apart; give one a name (distill[i].name=...)")
            made.append(made_label)
            try:
                check_distill_settings(cfg)
                normalise_distill(cfg)
                if resolution is not None and cfg.data.resolution != resolution:
                    raise ConfigError(f"data.resolution={cfg.data.resolution}, but the teacher is {resolution} px: "
                                      f"set data.resolution={resolution}")
                if source is not None and not _same_source(cfg.data, source):
                    raise ConfigError(f"it reads {source_description(cfg.data)} [{cfg.data.train_split}], the "
                                      f"evaluate stage's source is {source_description(source)} "
                                      f"[{source.train_split}], and the evaluation refuses a set distilled from other "
                                      f"data: give both the same data (data.* in this stage, source.* in evaluate)")
                if find_method(cfg.method).needs_experts and not study.experts.config and \
                        not Path(cfg.mkdt.experts).is_dir():
                    raise ConfigError(f"it reads expert trajectories, and the study has no experts stage and "
                                      f"mkdt.experts={cfg.mkdt.experts} is no folder: add an experts stage "
                                      f"(experts.config=...), or pass mkdt.experts=FOLDER")
                available = check_source(cfg)
                if feature_dim:
                    check_budget_fits(cfg, cfg.data.resolution, feature_dim, available)
            except ValueError as exc:
                raise type(exc)(f"{label}: {exc}") from None
    if evaluation is not None:
        try:
            check_evaluate_settings(evaluation)
            check_targets(evaluation, resolution)
        except ValueError as exc:
            raise type(exc)(f"evaluate stage: {exc}") from None
