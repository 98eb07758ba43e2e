"""FLOPs of one step of each stage, counted by torch.utils.flop_counter.FlopCounterMode (docs/performance.md,
"Benchmark").

    python benchmarks/gpu/speed_flops.py --teacher DIR [--out flops.json] [--device meta|cpu|cuda]
        [--teacher-args K=V ...] [--krr-args K=V ...] [--boost-args K=V ...] [--eval-args K=V ...]

Each step is built from the package's public pieces at the settings of its preset (and the overrides given):
- teacher (preset teacher_cifar100): ssdd.teacher.train.BarlowTwinsModel on two views of one batch, its
  Barlow Twins loss (ssdd.teacher.barlow_twins.barlow_twins_loss) and the monitor's cross-entropy, backward;
- distillation (presets distill_krr_st_cifar100 and cifar100): the teacher forward on the real batch, the pool
  member's features of the real batch, the support's features with their backward to the support images (as
  the outer loop's `backward(inputs=learned)` runs it), the KRR matmuls and solve (ssdd.distill.krr.krr_loss),
  and the pool member's SGD step on the support (forward and backward, MSE through its head); Boost's support
  is its m x views images, and its decoding from bases (a few small matmuls) is not counted;
- evaluation (preset evaluate_full): one pre-training SGD step (forward + backward of the network and its
  regression head on a batch) and one fine-tuning step (forward + backward with a class head).

FlopCounterMode counts matrix products and convolutions (2 FLOPs per multiply-add), forward and backward;
element-wise work (augmentation, BatchNorm, activations, the optimiser) is not counted: it costs memory
traffic, not matrix-unit time. The counts are the recipe's, not the code's: a fast path that skips work (a
cached teacher forward, for instance) is still credited with it, so achieved TFLOP/s compares old and new
code on the same work. On the `meta` device (default) nothing is computed: only shapes travel, so the count
is free on any machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ssdd.config import ModelConfig, load_config
from ssdd.models import build_model


def count(fn: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions that `fn()` runs (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def teacher_flops(overrides: list[str], device: str, num_classes: int = 100) -> dict[str, Any]:
    """One Barlow Twins step of preset teacher_cifar100: two views of a batch, loss, backward."""
    from ssdd.teacher.barlow_twins import barlow_twins_loss
    from ssdd.teacher.config import TeacherConfig
    from ssdd.teacher.train import BarlowTwinsModel

    cfg = load_config(TeacherConfig, "teacher_cifar100", overrides)
    resolution, batch = cfg.data.resolution, cfg.optim.batch_size
    model = BarlowTwinsModel(build_model(cfg.model, resolution), cfg.projector, num_classes).to(device).train()
    views = [torch.rand(batch, 3, resolution, resolution, device=device) for _ in range(2)]
    labels = torch.zeros(batch, dtype=torch.long, device=device)

    def step() -> None:
        z1, z2, logits = model(*views)
        loss = barlow_twins_loss(z1, z2, cfg.loss.lambda_offdiag, cfg.loss.scale) + F.cross_entropy(logits, labels)
        loss.backward()

    return {"preset": "teacher_cifar100", "overrides": overrides, "batch": batch, "images_per_step": batch,
            "flops_per_step": count(step), "model": f"{cfg.model.name}:{cfg.model.width}"}


def teacher_backbone(teacher_dir: str | Path, device: str) -> tuple[nn.Module, int, int]:
    """The teacher's network (architecture from its manifest, random weights: FLOPs need no weights)."""
    manifest = json.loads((Path(teacher_dir) / "manifest.json").read_text())
    backbone = build_model(ModelConfig(**manifest["model"]), manifest["resolution"]).to(device).eval()
    return backbone, int(manifest["feature_dim"]), int(manifest["resolution"])


def support_rows(cfg: Any, image_shape: tuple[int, int, int], feature_dim: int, available: int) -> tuple[int, int]:
    """(m, rows of the support) of a KRR-ST or Boost run: Boost's support is its m images times its views."""
    if cfg.method == "boost":
        from ssdd.distill.boost import boost_samples

        m = boost_samples(cfg.boost, image_shape, feature_dim, cfg.budget, available)[0]
        return m, m * len(cfg.boost.augmentations)
    from ssdd.distill.budget import samples_for_budget

    m = samples_for_budget(cfg.budget, image_shape, feature_dim, cfg.count_targets, available=available)
    return m, m


def distill_flops(preset: str, overrides: list[str], teacher_dir: str | Path, device: str,
                  available: int = 50_000) -> dict[str, Any]:
    """One outer step of KRR-ST or Boost, part by part (see the module's docstring)."""
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.krr import krr_loss, krr_solve_dtype
    from ssdd.distill.pool import seeded_member

    cfg = load_config(DistillConfig, preset, overrides)
    teacher, d, res = teacher_backbone(teacher_dir, device)
    m, rows = support_rows(cfg, (3, res, res), d, available)
    batch = cfg.outer.batch_size
    member = seeded_member(cfg.outer.model, res, d, 0).to(device)
    real = torch.rand(batch, 3, res, res, device=device)
    pool_rows = min(rows, cfg.pool.batch_size) if cfg.pool.batch_size > 0 else rows
    parts: dict[str, int] = {}
    with torch.no_grad():
        parts["teacher_forward_real"] = count(lambda: teacher(real))
        member.backbone.eval()
        parts["pool_forward_real"] = count(lambda: member.backbone(real))
        phi_t = member.backbone(real)
    support = torch.rand(rows, 3, res, res, device=device, requires_grad=True)
    targets = torch.rand(rows, d, device=device)
    phi_s: list[torch.Tensor] = []
    parts["support_forward"] = count(lambda: phi_s.append(member.backbone(support)))
    # the KRR step on real (random) features: autocast, which krr_loss enters, has no meta device; it is small
    at = "cpu" if device == "meta" else device
    phi_s_k = torch.rand(phi_s[0].shape, device=at, requires_grad=True)
    targets_k = torch.rand(rows, d, device=at, requires_grad=True)
    phi_t_k, y_t = torch.rand(phi_t.shape, device=at), torch.rand(batch, d, device=at)
    loss: list[torch.Tensor] = []
    parts["krr_forward"] = count(lambda: loss.append(krr_loss(phi_s_k, phi_t_k, targets_k, y_t, cfg.outer.ridge,
                                                              cfg.outer.form, krr_solve_dtype(cfg.outer.solve_dtype))))
    parts["krr_backward"] = count(lambda: loss[0].backward(inputs=[phi_s_k, targets_k]))
    grad = torch.ones_like(phi_s[0])
    parts["support_backward"] = count(lambda: phi_s[0].backward(grad, inputs=[support]))

    def pool_step() -> None:
        member.train()
        F.mse_loss(member(support[:pool_rows].detach()), targets[:pool_rows].detach()).backward()

    parts["pool_train_step"] = count(pool_step)
    return {"preset": preset, "overrides": overrides, "method": cfg.method, "m": m, "support_rows": rows,
            "real_batch": batch, "pool_rows": pool_rows, "parts": parts, "flops_per_step": sum(parts.values())}


def evaluate_flops(overrides: list[str], feature_dim: int, device: str, num_classes: int = 100) -> dict[str, Any]:
    """One pre-training step (regression to d targets) and one fine-tuning step (class head) of evaluate_full."""
    from ssdd.evaluation.config import EvaluateConfig

    cfg = load_config(EvaluateConfig, "evaluate_full", overrides)
    model_cfg = cfg.models[0]
    backbone = build_model(model_cfg, 32).to(device).train()
    result: dict[str, Any] = {"preset": "evaluate_full", "overrides": overrides,
                              "model": f"{model_cfg.name}:{model_cfg.width}"}
    for name, batch, out in (("pretrain", cfg.pretrain.batch_size, feature_dim),
                             ("finetune", cfg.finetune.batch_size, num_classes)):
        head = nn.Linear(backbone.feature_dim, out).to(device)
        x = torch.rand(batch, 3, 32, 32, device=device)
        result[f"{name}_batch"] = batch
        result[f"{name}_flops_per_step"] = count(lambda x=x, head=head: head(backbone(x)).square().mean().backward())
    return result


def all_flops(teacher_dir: str | Path, device: str, teacher_args: list[str], krr_args: list[str],
              boost_args: list[str], eval_args: list[str]) -> dict[str, Any]:
    """Every stage's count, with the method and the device it was counted on."""
    _, feature_dim, _ = teacher_backbone(teacher_dir, "meta")
    return {
        "method": "torch.utils.flop_counter.FlopCounterMode, matrix products and convolutions, forward and backward, "
                  "2 FLOPs per multiply-add; one step of each stage built from ssdd's public pieces "
                  "(benchmarks/gpu/speed_flops.py)",
        "counted_on": device, "torch": torch.__version__,
        "teacher": teacher_flops(teacher_args, device),
        "krr_st": distill_flops("distill_krr_st_cifar100", krr_args, teacher_dir, device),
        "boost": distill_flops("cifar100", boost_args, teacher_dir, device),
        "evaluate": evaluate_flops(eval_args, feature_dim, device),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a teacher folder (its manifest gives the network)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="meta", help="meta (count shapes only), cpu or cuda")
    for stage in ("teacher", "krr", "boost", "eval"):
        parser.add_argument(f"--{stage}-args", nargs="*", default=[], help=f"overrides of the {stage} preset")
    args = parser.parse_args(argv)
    result = all_flops(args.teacher, args.device, args.teacher_args, args.krr_args, args.boost_args, args.eval_args)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
