"""`ssdd evaluate`'s checks before work: settings, device, the output folder (never another run's), the
teacher, the networks, every split it will read, and every distilled set against the teacher and the source."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ssdd.config import ConfigError, DataConfig, dataset_name
from ssdd.data.dataset import DataError
from ssdd.data.validate import check_split
from ssdd.evaluation.validation import check_validation
from ssdd.run.checks import (
    auto_on_off,
    check_device,
    check_model,
    check_probe,
    choice,
    first_line,
    non_negative,
    positive,
    probability,
    sgd_settings,
    start_run,
    well_formed,
    whole,
)
from ssdd.run.folder import check_writable
from ssdd.run.runtime import PRECISIONS
from ssdd.teacher.validate import teacher_manifest


def check_evaluate_settings(cfg: Any) -> None:
    """Everything of an evaluation config that needs no file."""
    well_formed(cfg)
    auto_on_off("channels_last", cfg.channels_last)
    auto_on_off("compile", cfg.compile)
    choice("precision", cfg.precision, tuple(PRECISIONS))
    unknown = set(cfg.modes) - {"finetune", "linear_probe"}
    if unknown or not cfg.modes:
        raise ConfigError(f"modes must be a non-empty subset of [finetune, linear_probe], got {cfg.modes}")
    whole("seeds", cfg.seeds, 1)
    whole("cka_images", cfg.cka_images, 0)
    non_negative("checkpoint_minutes", cfg.checkpoint_minutes)
    if not cfg.models:
        raise ConfigError("models=[]: name at least one architecture, e.g. models=[{name: convnet}]")
    if not cfg.targets:
        raise ConfigError("targets=[]: name at least one target dataset, e.g. targets=[{source: npz, path: "
                          "data/cifar10.npz}]")
    _no_two_alike(cfg)
    p = cfg.pretrain
    whole("pretrain.epochs", p.epochs, 1)
    whole("pretrain.max_iterations", p.max_iterations, 0)
    whole("pretrain.batch_size", p.batch_size, 1)
    sgd_settings("pretrain", p)
    check_supervised_pretrain(p.supervised)
    if cfg.full_data.enabled:
        f = cfg.full_data
        whole("full_data.epochs", f.epochs, 1)
        whole("full_data.batch_size", f.batch_size, 1)
        whole("full_data.crop_padding", f.crop_padding, 0)
        sgd_settings("full_data", f)
    if "finetune" in cfg.modes:
        t = cfg.finetune
        whole("finetune.iterations", t.iterations, 1)
        whole("finetune.small_iterations", t.small_iterations, 1)
        whole("finetune.small_threshold", t.small_threshold, 0)
        choice("finetune.small_by", t.small_by, ("role", "size"))
        whole("finetune.batch_size", t.batch_size, 1)
        whole("finetune.crop_padding", t.crop_padding, 0)
        sgd_settings("finetune", t)
    if "linear_probe" in cfg.modes:
        check_probe(cfg.probe)
    check_validation(cfg.validation.fraction, cfg.validation.seed)


def _no_two_alike(cfg: Any) -> None:
    """Two targets of one name, or one network listed twice, would be summarised as more seeds of one row."""
    names = [dataset_name(t) for t in cfg.targets]
    for i, name in enumerate(names):
        if name in names[:i]:
            first = names.index(name)
            raise ConfigError(f"targets[{first}] and targets[{i}] are both named {name!r}, and the summary would "
                              f"average them as seeds of one target: give one a name (targets[{i}].name=...)")
    models = [(m.name, m.width, m.depth, m.feature) for m in cfg.models]
    for i, model in enumerate(models):
        if model in models[:i]:
            raise ConfigError(f"models[{models.index(model)}] and models[{i}] are the same network "
                              f"({cfg.models[i].name}); list each once")


def check_supervised_pretrain(s: Any) -> None:
    """pretrain.supervised: the recipe of sets with class labels (ssdd.evaluation.supervised)."""
    choice("pretrain.supervised.recipe", s.recipe, ("krr_st", "same"))
    choice("pretrain.supervised.augment", s.augment, ("dsa", "none"))
    sgd_settings("pretrain.supervised", s)
    probability("pretrain.supervised.lr_drop_at", s.lr_drop_at)
    positive("pretrain.supervised.lr_drop", s.lr_drop)


# the finished rows of earlier runs that a resumed evaluation leaves out (fewer seeds or sets), kept beside
# results.json for a later resume that asks for them again (ssdd.evaluation.protocol)
SET_ASIDE = "results.set_aside.json"
# the cells that processes under torchrun finished, each saved at once, until results.json holds their rows
# (ssdd.evaluation.schedule.save_cell)
SAVED_CELLS = "cells"
# beside them: the state of a cell's long pre-training (a full-data row) that an interrupted attempt left, under
# the cell's own name with this suffix (checkpoint_minutes; ssdd.evaluation.pretrain.PretrainCheckpoint)
PRETRAIN_SUFFIX = ".pretrain.pt"


def _check_out_dir_for_evaluation(out_dir: Path, resume: bool) -> None:
    from ssdd.run.folder import claim

    claim(out_dir, "evaluate", resume)  # never another run's folder; results.json only with --resume
    if (out_dir / SET_ASIDE).exists() and not (out_dir / "results.json").exists():
        raise FileExistsError(f"{out_dir} holds {SET_ASIDE} (cells of an earlier evaluation) but no results.json; "
                              f"move it away to start afresh, or choose another out_dir")
    saved = out_dir / SAVED_CELLS
    if not resume and saved.is_dir() and any(not p.name.startswith(".") for p in saved.iterdir()):
        raise FileExistsError(f"{out_dir} holds cells (or pre-training states) that an interrupted evaluation left "
                              f"({saved}); pass --resume to keep them, or choose another out_dir")


def _note(text: str) -> None:
    print(f"ssdd evaluate: note: {text}", file=sys.stderr)


def _check_sets(cfg: Any, teacher: dict[str, Any], source_cfg: DataConfig, allow_mismatch: bool) -> None:
    """Every distilled set: its manifest, its teacher (fingerprints) and its source (fingerprint)."""
    from ssdd.artifacts.files import ArtifactError
    from ssdd.distill.artifact import load_distilled
    from ssdd.distill.interop import declared_source_mismatch, evaluation_note

    override = "or pass --allow-mismatch to `ssdd evaluate` to score it anyway"
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
        _note(f"the evaluation source cannot be read ({first_line(exc)}), so the sources of the distilled sets are "
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


def check_targets(cfg: Any, resolution: int | None) -> None:
    """Every target's train and test splits exist, with labels (fine-tuning and the probe are scored by them)."""
    for i, target in enumerate(cfg.targets):
        target_cfg = replace(target, resolution=resolution or target.resolution)
        for split in ("train_split", "test_split"):
            check_split(target_cfg, split, f"targets[{i}]", needs_labels="a target (fine-tuning and the probe)")


def validate_evaluate(cfg: Any, resume: bool = False, allow_mismatch: bool = False) -> None:
    """`ssdd evaluate`: settings, device, the output folder (never another run's), the teacher, the networks,
    every split it will read, and every distilled set against the teacher and the source."""
    from ssdd.run.guard import check_inputs

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
    check_targets(cfg, resolution)
    _check_sets(cfg, teacher, source_cfg, allow_mismatch)
    start_run("evaluate", cfg.out_dir)
    check_inputs(out_dir, resume, {"teacher": teacher.get("fingerprint"),
                                   "teacher_function": teacher["function_fingerprint"]},
                 {"teacher": f"teacher ({cfg.teacher})", "teacher_function": f"teacher's function ({cfg.teacher})"})
