"""`ssdd evaluate`: one protocol for every pre-training source (docs/protocol.md).

For every architecture x seed x pre-training source (each distilled set, no pre-training, full data):
pre-train a fresh network, measure its linear CKA to the teacher, then fine-tune it and linear-probe it
on every target. One row per method x budget x architecture x target x seed x mode.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from ssdd.config import DataConfig, ModelConfig, config_to_dict, save_config
from ssdd.data import ImageDataset, channel_stats, load_split
from ssdd.distill import load_distilled
from ssdd.distill.interop import evaluation_note
from ssdd.evaluation.cka import linear_cka
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.finetune import finetune
from ssdd.evaluation.linear_probe import extract_features, probe_encoder
from ssdd.evaluation.pretrain import pretrain_full_data, pretrain_on_pairs
from ssdd.evaluation.report import write_report, write_results
from ssdd.models import build_model
from ssdd.runfolder import check_resume_compatible
from ssdd.runtime import resolve_device, versions
from ssdd.teacher import Teacher, load_teacher
from ssdd.teacher.locate import require_teacher_folder

# settings a resumed evaluation may change: more seeds or sets add cells, the others keep theirs
RESUMABLE_KEYS = ("out_dir", "distilled", "seeds", "device")


@dataclass
class Target:
    name: str
    train: ImageDataset
    test: ImageDataset
    mean: torch.Tensor
    std: torch.Tensor


@dataclass
class PretrainSource:
    label: str  # e.g. krr_st@100
    method: str
    budget: float | None
    info: dict[str, Any]  # storage, m, views, distill wall-clock


def _load_target(cfg: DataConfig, resolution: int, seed: int, device: torch.device) -> Target:
    cfg = DataConfig(**{**config_to_dict(cfg), "resolution": resolution})
    train, test = load_split(cfg, cfg.train_split, seed), load_split(cfg, cfg.test_split, seed)
    mean, std = channel_stats(train.images)
    return Target(cfg.name or train.name, train.to(device), test.to(device), torch.tensor(mean, device=device),
                  torch.tensor(std, device=device))


def source_label(manifest: dict[str, Any]) -> str:
    """krr_st@100, or krr_st@100/images-only under KRR-ST's paper convention (targets not counted);
    a set distilled with a `name` is labelled name@100."""
    label = f"{manifest.get('name') or manifest['method']}@{manifest['budget']:g}"
    return label + ("/images-only" if manifest.get("budget_counts") == "images only" else "")


def _sources(cfg: EvaluateConfig, teacher: Teacher, n_source: int) -> list[PretrainSource]:
    sources = []
    for path in cfg.distilled:
        distilled = load_distilled(path)
        manifest = distilled.manifest
        note = evaluation_note(manifest)  # imported sets whose targets no known teacher vouches for
        if note is not None:
            print(f"ssdd evaluate: note: {path}: {note}", file=sys.stderr)
        elif manifest.get("teacher", {}).get("fingerprint") != teacher.fingerprint:
            raise ValueError(f"{path} was distilled with teacher {manifest.get('teacher', {}).get('path')} "
                             f"(fingerprint {manifest.get('teacher', {}).get('fingerprint')}), not the evaluation "
                             f"teacher {cfg.teacher}: rows would not be comparable")
        if distilled.image_shape[-1] != teacher.resolution:
            raise ValueError(f"{path} holds {distilled.image_shape[-1]} px images; the teacher is "
                             f"{teacher.resolution} px")
        storage = distilled.storage()
        images, _ = distilled.training_pairs()
        source_images = manifest.get("source", {}).get("images", n_source)
        sources.append(PretrainSource(
            source_label(manifest), distilled.method, manifest["budget"],
            {"path": str(path), "image_equivalents": storage.image_equivalents, "bytes": storage.bytes,
             "compression": source_images / storage.image_equivalents, "m": manifest.get("m"),
             "views": int(images.shape[0]), "distill_s": distilled.manifest.get("wall_clock_s"),
             "distill_device": distilled.manifest.get("device")}))
    labels = [s.label for s in sources]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"several distilled sets share the label {', '.join(duplicated)}; evaluate them in "
                         f"separate runs (different out_dir)")
    if cfg.no_pretrain:
        sources.append(PretrainSource("no_pretrain", "no_pretrain", None, {}))
    if cfg.full_data.enabled:
        sources.append(PretrainSource("full_data", "full_data", None, {"image_equivalents": float(n_source),
                                                                       "compression": 1.0, "views": n_source}))
    return sources


def _pretrain(source: PretrainSource, model_cfg: ModelConfig, cfg: EvaluateConfig, teacher: Teacher,
              source_images: torch.Tensor, resolution: int, seed: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    backbone = build_model(model_cfg, resolution).to(device)
    generator = torch.Generator().manual_seed(seed)
    if source.method == "no_pretrain":
        return backbone
    if source.method == "full_data":
        pretrain_full_data(backbone, source_images, teacher, teacher.mean, teacher.std, cfg.full_data, generator)
        return backbone
    distilled = load_distilled(source.info["path"])
    images, targets = distilled.training_pairs()
    stats = distilled.manifest["normalization"]
    mean, std = torch.tensor(stats["mean"], device=device), torch.tensor(stats["std"], device=device)
    pretrain_on_pairs(backbone, images.to(device), targets.to(device), mean, std, cfg.pretrain, generator,
                      num_classes=distilled.manifest.get("num_classes"))
    return backbone


def _cell(label: str, arch: str, width: Any, depth: Any, feature: Any, seed: int) -> tuple:
    return (label, arch, width, depth, feature, seed)


def _row_cell(row: dict[str, Any]) -> tuple:
    return _cell(row["label"], row["arch"], row.get("arch_width"), row.get("arch_depth"), row.get("arch_feature"),
                 row["seed"])


def _previous_rows(out_dir: Path, cfg: EvaluateConfig, resume: bool) -> list[dict[str, Any]]:
    """Rows of an earlier run in out_dir to keep (--resume), after checking it measured the same thing."""
    if (out_dir / "manifest.json").exists() or (out_dir / "checkpoint.pt").exists():
        raise FileExistsError(f"{out_dir} holds a teacher or distillation run; choose another out_dir for the "
                              f"evaluation")
    results = out_dir / "results.json"
    if not resume:
        if results.exists():
            raise FileExistsError(f"{out_dir} already holds evaluation results (results.json); pass --resume to "
                                  f"add only the missing cells, or choose another out_dir")
        return []
    if not results.exists():
        return []
    saved = yaml.safe_load((out_dir / "config.yaml").read_text()) if (out_dir / "config.yaml").exists() else None
    if saved is not None:
        check_resume_compatible(saved, config_to_dict(cfg), RESUMABLE_KEYS)
    try:
        return list(json.loads(results.read_text()))
    except ValueError:
        raise ValueError(f"{results}: not valid JSON; move it away to start the evaluation afresh") from None


def run_evaluate(cfg: EvaluateConfig, show_progress: bool = True, resume: bool = False) -> list[dict[str, Any]]:
    """Evaluate every cell; with `resume`, keep the complete cells already in out_dir/results.json."""
    unknown = set(cfg.modes) - {"finetune", "linear_probe"}
    if unknown or not cfg.modes:
        raise ValueError(f"modes must be a non-empty subset of [finetune, linear_probe], got {cfg.modes}")
    if cfg.seeds < 1:
        raise ValueError("seeds must be at least 1")
    require_teacher_folder(cfg.teacher)
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.out_dir)
    previous = _previous_rows(out_dir, cfg, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    teacher = load_teacher(cfg.teacher, device)
    resolution = teacher.resolution
    source_cfg = DataConfig(**{**config_to_dict(cfg.source), "resolution": resolution})
    need_source = cfg.full_data.enabled or cfg.cka_images > 0
    source_train = load_split(source_cfg, source_cfg.train_split, cfg.seed).to(device) if cfg.full_data.enabled \
        else None
    cka_images = None
    if need_source and cfg.cka_images > 0:
        test = load_split(source_cfg, source_cfg.test_split, cfg.seed)
        cka_images = test.subset(cfg.cka_images, cfg.seed).images.to(device)
        teacher_features = teacher.encode(cka_images)
    n_source = len(source_train) if source_train is not None else 0
    sources = _sources(cfg, teacher, n_source)
    targets = [_load_target(t, resolution, cfg.seed, device) for t in cfg.targets]
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    cells = [(m, s, src) for m in cfg.models for s in seeds for src in sources]
    per_cell = len(targets) * len(cfg.modes)
    counts: dict[tuple, int] = {}
    for row in previous:
        counts[_row_cell(row)] = counts.get(_row_cell(row), 0) + 1
    complete = {cell for cell, n in counts.items() if n == per_cell}
    rows: list[dict[str, Any]] = [row for row in previous if _row_cell(row) in complete]
    if complete:
        print(f"resuming: {len(complete)} finished cells kept from {out_dir / 'results.json'}")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    bar = tqdm(cells, desc="evaluate", disable=not show_progress, dynamic_ncols=True)
    for model_cfg, seed, source in bar:
        if _cell(source.label, model_cfg.name, model_cfg.width, model_cfg.depth, model_cfg.feature, seed) in complete:
            continue
        bar.set_postfix(source=source.label, arch=model_cfg.name, seed=seed)
        start = time.perf_counter()
        backbone = _pretrain(source, model_cfg, cfg, teacher, source_train.images if source_train else None,
                             resolution, seed, device)
        pretrain_s = time.perf_counter() - start
        cka = None
        if cka_images is not None:
            cka = linear_cka(extract_features(backbone, cka_images, teacher.mean, teacher.std), teacher_features)
        for target in targets:
            for mode in cfg.modes:
                start = time.perf_counter()
                generator = torch.Generator().manual_seed(seed * 1009 + 17)
                if mode == "finetune":
                    top1 = finetune(backbone, target.train, target.test, target.mean, target.std, cfg.finetune,
                                    generator)["top1"]
                else:
                    top1 = probe_encoder(backbone, target.mean, target.std, target.train.images, target.train.labels,
                                         target.test.images, target.test.labels, target.train.num_classes,
                                         cfg.probe, seed=seed)["test_top1"]
                rows.append({
                    "method": source.method, "label": source.label, "budget": source.budget,
                    "arch": model_cfg.name, "arch_width": model_cfg.width, "arch_depth": model_cfg.depth,
                    "arch_feature": model_cfg.feature, "target": target.name, "seed": seed,
                    "mode": mode, "top1": top1, "cka_to_teacher": cka, "pretrain_s": pretrain_s,
                    "eval_s": time.perf_counter() - start, "device": device_name,
                    **{k: v for k, v in source.info.items() if k != "path"},
                })
        write_results(rows, out_dir)  # after every cell, so an interrupted run keeps what it measured
    print(write_report(rows, out_dir, {"versions": versions(), "config": config_to_dict(cfg)}))
    return rows
