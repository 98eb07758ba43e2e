"""Measuring one cell of `ssdd evaluate` (docs/protocol.md, "Stages"): a fresh network of one architecture,
seeded by the cell alone, pre-trained on one source (a distilled set, nothing, or full data), its linear CKA to
the teacher, then fine-tuned and linear-probed on every target. One row per target x mode.

Which cells an evaluation has, which it keeps or reuses, and in which order they run: ssdd.evaluation.schedule.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ssdd.artifacts.integrity import check_trained
from ssdd.config import DataConfig, ModelConfig, config_to_dict
from ssdd.data import ImageDataset, channel_stats, load_split
from ssdd.distill import load_distilled
from ssdd.distill.artifact import set_fingerprint
from ssdd.distill.interop import compression_source_images, evaluation_note
from ssdd.evaluation.cka import linear_cka
from ssdd.evaluation.config import EvaluateConfig, ValidationConfig
from ssdd.evaluation.fastpath import Forward, NetworkForwards, network_forward
from ssdd.evaluation.finetune import finetune
from ssdd.evaluation.linear_probe import extract_features, probe_encoder
from ssdd.evaluation.pretrain import (
    PretrainCheckpoint,
    full_data_samples,
    full_data_steps,
    pretrain_full_data,
    pretrain_on_pairs,
    pretrain_samples,
    pretrain_steps,
)
from ssdd.evaluation.references import FULL_DATA, FULL_DATA_SAME_RECIPE, NO_PRETRAIN
from ssdd.evaluation.supervised import pretrain_supervised, uses_supervised_recipe
from ssdd.evaluation.validation import EVAL_SPLIT_TEST, EVAL_SPLIT_VALIDATION, split_train
from ssdd.models import build_model
from ssdd.run.progress import phase
from ssdd.teacher import Teacher


@dataclass
class Target:
    name: str
    train: ImageDataset  # what fine-tuning and the probe train on
    test: ImageDataset  # what every row scores: the test split, or the validation part of train
    mean: torch.Tensor
    std: torch.Tensor
    read: dict[str, ImageDataset] = field(default_factory=dict)  # split name -> the split as read (fingerprints)
    split: str = EVAL_SPLIT_TEST  # which split the rows score (recorded as eval_split)
    train_size: int | None = None  # images of the train split as read, when `train` is only part of it


@dataclass
class PretrainSource:
    label: str  # e.g. krr_st@100
    method: str
    budget: float | None
    info: dict[str, Any]  # storage, m, views, distill wall-clock
    labels: bool = False  # a set whose targets are class labels


def load_target(cfg: DataConfig, resolution: int, seed: int, device: torch.device,
                validation: ValidationConfig | None = None) -> Target:
    """A target's train and test splits at `resolution`, on `device`, with the train split's channel statistics.
    With a validation fraction, the train split is carved instead (ssdd.evaluation.validation): the rest is
    trained on, the held-out part is scored, and the test split is not read."""
    cfg = DataConfig(**{**config_to_dict(cfg), "resolution": resolution})
    if validation is not None and validation.fraction > 0:
        whole = load_split(cfg, cfg.train_split, seed)
        train, held = split_train(whole, validation.fraction, validation.seed)
        mean, std = channel_stats(train.images)
        return Target(cfg.name or train.name, train.to(device), held.to(device), torch.tensor(mean, device=device),
                      torch.tensor(std, device=device), {cfg.train_split: whole}, EVAL_SPLIT_VALIDATION, len(whole))
    train, test = load_split(cfg, cfg.train_split, seed), load_split(cfg, cfg.test_split, seed)
    mean, std = channel_stats(train.images)
    train, test = train.to(device), test.to(device)
    return Target(cfg.name or train.name, train, test, torch.tensor(mean, device=device),
                  torch.tensor(std, device=device), {cfg.train_split: train, cfg.test_split: test})


def set_label(name: str, budget: float, images_only: bool = False) -> str:
    """krr_st@100, or krr_st@100/images-only under KRR-ST's paper convention (targets not counted); `name` is the
    set's name, or its method's."""
    return f"{name}@{budget:g}" + ("/images-only" if images_only else "")


def source_label(manifest: dict[str, Any]) -> str:
    """A saved set's label (set_label): a set distilled with a `name` is labelled name@100."""
    return set_label(manifest.get("name") or manifest["method"], manifest["budget"],
                     manifest.get("budget_counts") == "images only")


def pretrain_sources(cfg: EvaluateConfig, teacher: Teacher, n_source: int) -> list[PretrainSource]:
    """Every pre-training source of an evaluation, in its order: the distilled sets, then the reference rows."""
    sources = []
    for path in cfg.distilled:
        distilled = load_distilled(path)
        manifest = distilled.manifest
        note = evaluation_note(manifest)  # imported sets whose targets no known teacher vouches for
        if note is not None:
            print(f"ssdd evaluate: note: {path}: {note}", file=sys.stderr)
        # the teacher and source of every set were checked before any work (evaluation/validate.py, --allow-mismatch)
        if distilled.image_shape[-1] != teacher.resolution:
            raise ValueError(f"{path} holds {distilled.image_shape[-1]} px images; the teacher is "
                             f"{teacher.resolution} px")
        storage = distilled.storage()
        images, _ = distilled.training_pairs()
        source_images = compression_source_images(manifest, n_source, cfg.source)
        sources.append(PretrainSource(
            source_label(manifest), distilled.method, manifest["budget"],
            {"path": str(path), "image_equivalents": storage.image_equivalents, "bytes": storage.bytes,
             "compression": source_images / storage.image_equivalents if source_images else None,
             "m": manifest.get("m"),
             "views": int(images.shape[0]), "distill_s": distilled.manifest.get("wall_clock_s"),
             "distill_steps": distilled.manifest.get("steps_done"),  # outer steps; None for the random subsets
             "distill_device": distilled.manifest.get("device"),
             "set_fingerprint": set_fingerprint(manifest)}, labels=manifest.get("num_classes") is not None))
    labels = [s.label for s in sources]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"several distilled sets share the label {', '.join(duplicated)}; give each a label of "
                         f"its own (name=... when distilling it, --name for ssdd import-distilled), or evaluate them "
                         f"in separate runs (different out_dir)")
    if cfg.no_pretrain:
        sources.append(PretrainSource(NO_PRETRAIN, NO_PRETRAIN, None, {}))
    whole_source = {"image_equivalents": float(n_source), "compression": 1.0, "views": n_source}
    if cfg.full_data.enabled:
        sources.append(PretrainSource(FULL_DATA, FULL_DATA, None, dict(whole_source)))
    if cfg.full_data.same_recipe:
        sources.append(PretrainSource(FULL_DATA_SAME_RECIPE, FULL_DATA_SAME_RECIPE, None, dict(whole_source)))
    return sources


def pretrain_steps_of(source: PretrainSource, cfg: EvaluateConfig) -> int:
    """The SGD steps a source's pre-training takes (its `views` are the pairs or source images it trains on)."""
    if source.method == NO_PRETRAIN:
        return 0
    if source.method == FULL_DATA:
        return full_data_steps(source.info["views"], cfg.full_data)
    return pretrain_steps(source.info["views"], cfg.pretrain)


def pretrain_samples_of(source: PretrainSource, cfg: EvaluateConfig) -> int:
    """The pairs (or source images) a source's pre-training passes through the network in all: its steps' batches
    added up, so a set smaller than the batch counts the set, not the batch, at every step."""
    if source.method == NO_PRETRAIN:
        return 0
    if source.method == FULL_DATA:
        return full_data_samples(source.info["views"], cfg.full_data)
    return pretrain_samples(source.info["views"], cfg.pretrain)


def pretrain_network(source: PretrainSource, model_cfg: ModelConfig, cfg: EvaluateConfig, teacher: Teacher,
              source_images: torch.Tensor, resolution: int, seed: int, device: torch.device,
              source_targets: torch.Tensor | None = None, layout: torch.memory_format = torch.preserve_format,
              checkpoint: PretrainCheckpoint | None = None, forward: Forward = network_forward) -> nn.Module:
    """A fresh network pre-trained on `source`; `source_targets` (the teacher's representations of the
    un-augmented source images) are needed by the same-recipe full-data row only. `checkpoint`: where the
    full-data rows' long pre-training saves and resumes its state (the distilled sets' takes seconds).
    `forward(network, x)`: how the training steps run the network (NetworkForwards)."""
    torch.manual_seed(seed)
    backbone = build_model(model_cfg, resolution).to(device, memory_format=layout)  # the copies fine-tuned keep it
    generator = torch.Generator().manual_seed(seed)
    if source.method == NO_PRETRAIN:
        return backbone
    if source.method == FULL_DATA:
        pretrain_full_data(backbone, source_images, teacher, teacher.mean, teacher.std, cfg.full_data, generator,
                           cfg.precision, checkpoint, forward)
        return backbone
    if source.method == FULL_DATA_SAME_RECIPE:  # every source image, trained exactly like the distilled sets
        pretrain_on_pairs(backbone, source_images, source_targets, teacher.mean, teacher.std, cfg.pretrain, generator,
                          precision=cfg.precision, checkpoint=checkpoint, forward=forward)
        return backbone
    distilled = load_distilled(source.info["path"])
    images, targets = distilled.training_pairs()
    stats = distilled.manifest["normalization"]
    mean, std = torch.tensor(stats["mean"], device=device), torch.tensor(stats["std"], device=device)
    # labels: KRR-ST's recipe unless recipe=same
    train = pretrain_supervised if uses_supervised_recipe(targets, cfg.pretrain) else pretrain_on_pairs
    train(backbone, images.to(device), targets.to(device), mean, std, cfg.pretrain, generator,
          num_classes=distilled.manifest.get("num_classes"), precision=cfg.precision, forward=forward)
    return backbone


@dataclass
class Bench:
    """What every cell of an evaluation reads, loaded once per process on its device."""

    cfg: EvaluateConfig
    teacher: Teacher
    source_images: torch.Tensor | None  # the source train split (full-data pre-training), else None
    resolution: int
    device: torch.device
    device_name: str
    cka_images: torch.Tensor | None
    teacher_features: torch.Tensor | None
    targets: list[Target]
    layout: torch.memory_format  # of every network built here (channels_last or preserve_format)
    forwards: NetworkForwards  # the training forward of each architecture (`compile`)
    _source_targets: torch.Tensor | None = field(default=None, repr=False)

    def source_targets(self) -> torch.Tensor:
        """The teacher's representations of every un-augmented source training image, computed once."""
        if self._source_targets is None:
            assert self.source_images is not None, "the source train split is loaded for the full-data rows"
            with phase(f"teacher features of {self.source_images.shape[0]:,} source training images (targets of "
                       f"{FULL_DATA_SAME_RECIPE})"), torch.no_grad():
                self._source_targets = self.teacher.encode(self.source_images)
        return self._source_targets


def evaluate_cell(bench: Bench, model_cfg: ModelConfig, seed: int, source: PretrainSource,
                  checkpoint: PretrainCheckpoint | None = None) -> list[dict[str, Any]]:
    """The rows of one cell: pre-train (seeded by the cell alone; a full-data row from `checkpoint` when an earlier
    attempt left one), CKA, then every target x mode."""
    cfg, teacher = bench.cfg, bench.teacher
    source_targets = bench.source_targets() if source.method == FULL_DATA_SAME_RECIPE else None
    forward = bench.forwards.of(model_cfg)
    start = time.perf_counter()
    with phase("random initialisation" if source.method == NO_PRETRAIN else f"pre-training on {source.label}"):
        backbone = pretrain_network(source, model_cfg, cfg, teacher, bench.source_images, bench.resolution, seed,
                                    bench.device, source_targets, bench.layout, checkpoint, forward)
    hint = "full_data.lr" if source.method == FULL_DATA else "pretrain.supervised.lr" \
        if source.labels and cfg.pretrain.supervised.recipe == "krr_st" else "pretrain.lr"
    check_trained(backbone, f"pre-training on {source.label}", hint, bench.resolution)  # finished cells stay
    pretrain_s = time.perf_counter() - start
    cka = None
    if bench.cka_images is not None:
        with phase(f"CKA to the teacher on {bench.cka_images.shape[0]:,} images") as measuring:
            cka = linear_cka(extract_features(backbone, bench.cka_images, teacher.mean, teacher.std),
                             bench.teacher_features)
            measuring.detail = f"{cka:.3f}"
    rows = []
    for target in bench.targets:
        for mode in cfg.modes:
            start = time.perf_counter()
            generator = torch.Generator().manual_seed(seed * 1009 + 17)
            with phase(f"{mode} on {target.name}") as measuring:
                top1, iterations = _score(cfg, backbone, target, mode, seed, generator, forward)
                measuring.detail = f"top-1 {top1:.2f} %"
            rows.append({
                "method": source.method, "label": source.label, "budget": source.budget,
                "arch": model_cfg.name, "arch_width": model_cfg.width, "arch_depth": model_cfg.depth,
                "arch_feature": model_cfg.feature, "target": target.name, "seed": seed,
                "mode": mode, "top1": top1, "cka_to_teacher": cka, "pretrain_s": pretrain_s,
                "pretrain_steps": pretrain_steps_of(source, cfg),
                "pretrain_samples": pretrain_samples_of(source, cfg), "finetune_iterations": iterations,
                "eval_s": time.perf_counter() - start, "device": bench.device_name,
                "channels_last": bench.layout == torch.channels_last, "precision": cfg.precision,
                # whether a network trained for this row ran through torch.compile (a random initialisation's probe
                # trains none)
                "compiled": bench.forwards.active(model_cfg) and (source.method != NO_PRETRAIN or mode == "finetune"),
                "eval_split": target.split,
                **({"validation_fraction": cfg.validation.fraction, "validation_seed": cfg.validation.seed}
                   if target.split == EVAL_SPLIT_VALIDATION else {}),
                **{k: v for k, v in source.info.items() if k != "path"},
            })
    return rows


def _score(cfg: EvaluateConfig, backbone: nn.Module, target: Target, mode: str, seed: int,
           generator: torch.Generator, forward: Forward = network_forward) -> tuple[float, int | None]:
    """Top-1 of one mode on one target, and the fine-tuning iterations it ran (None for the linear probe)."""
    if mode == "finetune":
        result = finetune(backbone, target.train, target.test, target.mean, target.std, cfg.finetune, generator,
                          target.name, target.train_size, cfg.precision, forward)
        return result["top1"], int(result["iterations"])
    top1 = probe_encoder(backbone, target.mean, target.std, target.train.images, target.train.labels,
                         target.test.images, target.test.labels, target.train.num_classes, cfg.probe,
                         seed=seed)["test_top1"]
    return top1, None
