"""Real-image baselines at the same budget (docs/method.md section 5): random, k-means and high-loss subsets.

Both store m real images (uint8, exact) with their teacher representations as targets; m follows from
the budget with each sample costing 1 + d/(3HW) image-equivalents. The supervised variant of the random
subset (`random_supervised`, as in KRR-ST's tables) stores class labels instead (one value each) and is
pre-trained with cross-entropy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ssdd.config import ConfigError
from ssdd.distill.budget import label_samples, teacher_target_samples
from ssdd.distill.mkdt import check_experts_folder
from ssdd.distill.registry import DistillContext, DistillMethod, DistillResult, register_method
from ssdd.distill.selection import kmeans_indices, random_indices
from ssdd.distill.verify import verify_labels, verify_teacher_targets
from ssdd.run.progress import phase


def _m(ctx: DistillContext) -> int:
    return teacher_target_samples(ctx.cfg, tuple(ctx.source.images.shape[1:]), ctx.teacher.feature_dim,
                                  len(ctx.source))


def _result(ctx: DistillContext, index: torch.Tensor, info: dict[str, Any]) -> DistillResult:
    images = ctx.source.images[index.to(ctx.source.images.device)]
    with phase(f"teacher targets of the {images.shape[0]:,} chosen images"):
        targets = ctx.teacher.encode(images)
    return DistillResult({"images": images.cpu(), "targets": targets.cpu()},
                         {"m": int(index.numel()), "source_indices": index.cpu().tolist(), **info})


def distill_random_supervised(ctx: DistillContext) -> DistillResult:
    """The same draw as `random` at this seed, with labels instead of teacher targets."""
    m = label_samples(ctx.cfg, tuple(ctx.source.images.shape[1:]), 1, len(ctx.source))
    index = random_indices(len(ctx.source), m, torch.Generator().manual_seed(ctx.cfg.seed))
    device_index = index.to(ctx.source.images.device)
    labels = ctx.source.require_labels("method=random_supervised")
    stored = {"images": ctx.source.images[device_index].cpu(), "labels": labels[device_index].cpu()}
    return DistillResult(stored, {"m": m, "source_indices": index.tolist(), "num_classes": ctx.source.num_classes})


def reconstruct_subset(stored: dict[str, torch.Tensor], manifest: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return stored["images"].float() / 255.0, stored["targets"].float()


def distill_random(ctx: DistillContext) -> DistillResult:
    return _result(ctx, random_indices(len(ctx.source), _m(ctx), torch.Generator().manual_seed(ctx.cfg.seed)), {})


def distill_kmeans(ctx: DistillContext) -> DistillResult:
    """The real images nearest to the k-means centroids of the teacher features of the whole source."""
    with phase(f"teacher features of the {len(ctx.source):,} source images"):
        features = ctx.teacher.encode(ctx.source.images)
    index, inertia = kmeans_indices(features, _m(ctx), ctx.cfg.kmeans_iterations, ctx.cfg.seed)
    return _result(ctx, index, {"kmeans_inertia": inertia})


def distill_high_loss(ctx: DistillContext) -> DistillResult:
    """MKDT's starting point alone: the m real images its experts fit worst (`mkdt.experts`), not distilled."""
    from ssdd.distill.mkdt import check_experts_match, experts_fingerprint, init_indices
    from ssdd.experts.artifact import load_experts

    experts = load_experts(ctx.cfg.mkdt.experts)
    check_experts_match(experts, ctx.teacher.function_fingerprint, ctx.source.fingerprint())
    index = init_indices(experts, _m(ctx), "high_loss", len(ctx.source), ctx.cfg.seed)
    return _result(ctx, index, {"experts": {"path": ctx.cfg.mkdt.experts, "fingerprint": experts_fingerprint(experts),
                                            "count": experts.count, "epochs": experts.epochs}})


def check_high_loss_settings(cfg: Any) -> None:
    if not cfg.mkdt.experts:
        raise ConfigError("method=high_loss needs mkdt.experts=FOLDER: expert trajectories from `ssdd experts` "
                          "made with the same teacher and source (their final errors rank the images)")


def check_high_loss_files(cfg: Any, teacher: Mapping[str, Any], available: int | None) -> None:
    check_experts_folder(cfg, teacher, available)  # any number of epochs: only their final errors are read


SUBSET = {"samples": teacher_target_samples, "verify": verify_teacher_targets}
register_method(DistillMethod("random", distill_random, reconstruct_subset, **SUBSET,
                              note="random real images, teacher targets", colour="tab:gray"))
register_method(DistillMethod(
    "high_loss", distill_high_loss, reconstruct_subset, **SUBSET, check=check_high_loss_settings,
    check_files=check_high_loss_files, reads=("mkdt.experts",), needs_experts=True,
    note="the real images MKDT's experts fit worst, teacher targets (MKDT's start)", colour="tab:pink"))
register_method(DistillMethod("kmeans", distill_kmeans, reconstruct_subset, **SUBSET,
                              note="k-means-chosen real images, teacher targets", colour="tab:green"))
register_method(DistillMethod(
    "random_supervised", distill_random_supervised,
    lambda stored, manifest: (stored["images"].float() / 255.0, stored["labels"].long()),
    samples=label_samples, verify=verify_labels, needs_labels=True, note="random real images, class labels",
    colour="tab:purple"))
