"""KRR-ST (Lee et al., ICLR 2024; docs/method.md section 3).

Learned state: images X_s (m,3,H,W) in pixel space, initialised from m random real images, and
targets Y_s (m,d) initialised to the teacher's representations of them. Each outer step (the loop in
`ssdd.distill.outer`) picks a pool model, draws a crop+flipped real batch with teacher targets, and
moves (X_s, Y_s) by AdamW on the KRR loss; then the pool model takes one SGD step on (X_s, Y_s).
"""

from __future__ import annotations

from typing import Any

import torch

from ssdd.augment import to_float
from ssdd.distill.budget import teacher_target_samples
from ssdd.distill.outer import RealViews, Support, outer_loop
from ssdd.distill.registry import DistillContext, DistillMethod, DistillResult, register_method
from ssdd.distill.selection import random_indices
from ssdd.distill.verify import verify_teacher_targets


def distill_krr_st(ctx: DistillContext) -> DistillResult:
    cfg, outer, device, teacher = ctx.cfg, ctx.cfg.outer, ctx.device, ctx.teacher
    images_u8 = ctx.source.images
    n_source, image_shape = images_u8.shape[0], tuple(images_u8.shape[1:])
    m = teacher_target_samples(cfg, image_shape, teacher.feature_dim, n_source)
    cpu_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    init_index = random_indices(n_source, m, cpu_gen)
    x_s = to_float(images_u8[init_index.to(images_u8.device)]).clone().requires_grad_(True)
    with torch.no_grad():
        y_s = teacher(x_s).float().clone().requires_grad_(True)

    loop = outer_loop(ctx, "krr_st", {"images": x_s, "targets": y_s}, lambda: Support(x_s, y_s),
                      RealViews(outer.real_crop_padding), cpu_gen, aug_gen)
    info: dict[str, Any] = {"m": m, "steps": outer.steps, **loop.info(), "init_indices": init_index.tolist()}
    stored = {"images": x_s.detach().cpu(), "targets": y_s.detach().cpu()}
    return DistillResult(stored, info, finished=loop.finished)


def reconstruct_krr_st(stored: dict[str, torch.Tensor], manifest: dict[str, Any]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    return stored["images"].float(), stored["targets"].float()


register_method(DistillMethod(
    "krr_st", distill_krr_st, reconstruct_krr_st, parallel=True, samples=teacher_target_samples,
    verify=verify_teacher_targets, outer_loop=True, targets_optional=True,
    note="KRR-ST: learned images and targets", colour="tab:orange"))
