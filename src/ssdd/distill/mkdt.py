"""MKDT (Joshi, Ni, Mirzasoleiman, ICLR 2025; docs/method.md): matching knowledge-distillation trajectories.

Learned state: m images (in the teacher-normalised space while learning, stored in pixel space like
KRR-ST's), their m target representations, and the student's learning rate. Initialisation: the m
source images with the highest loss under the experts' final parameters (`mkdt.init=high_loss`; or a
random draw), targets = the teacher's representations of them. Each iteration draws an expert and a start
epoch t < max_start_epoch, trains a student from the expert's parameters at t for `syn_steps` SGD steps on
minibatches of the distilled set (MSE to the targets, the learnable lr), and moves images, targets and lr
by SGD (momentum 0.5) on ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2 (ssdd.distill.unroll).

Stored and counted exactly like KRR-ST (images + targets, m from the same budget rule); the learned lr
goes to the manifest. One process runs it (under torchrun the other ranks wait).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ssdd.augment import normalize, to_float
from ssdd.config import ConfigError, ModelConfig, config_to_dict
from ssdd.distill.budget import teacher_target_samples
from ssdd.distill.pool import seeded_member
from ssdd.distill.registry import DistillContext, DistillMethod, DistillResult, register_method
from ssdd.distill.selection import random_indices
from ssdd.distill.unroll import FlatModel, matching_loss, minibatches, unrolled_sgd
from ssdd.distill.verify import verify_teacher_targets
from ssdd.experts.artifact import ExpertTrajectories, load_experts
from ssdd.run.checks import choice, first_line, non_negative, positive, whole
from ssdd.run.guard import Diverged
from ssdd.run.loop import RunLoop, Watched
from ssdd.run.progress import phase


@dataclass
class MKDTConfig:
    """MKDT's trajectory matching (defaults = the official MKDT code's CIFAR settings; docs/method.md)."""

    experts: str = ""  # an expert-trajectories folder from `ssdd experts` with the same teacher (required)
    iterations: int = 5000  # outer (distillation) iterations
    syn_steps: int = 40  # student SGD steps on the distilled set per iteration
    expert_epochs: int = 2  # M: the student is matched to the expert M epochs after its start
    max_start_epoch: int = 2  # start epochs are drawn from 0 .. max_start_epoch - 1
    batch_syn: int = 256  # distilled images per student step (0 = all)
    lr_images: float = 1000.0  # SGD on the images, which are learned in the teacher-normalised space
    lr_targets: float = 1.0  # SGD on the target representations
    lr_lr: float = 1e-4  # SGD on the student's learnable learning rate
    init_lr: float = 0.1  # the learnable learning rate starts at the experts' lr
    momentum: float = 0.5  # of the three SGD optimisers
    init: str = "high_loss"  # high_loss (the images the experts fit worst) | random
    recompute: bool = True  # recompute each student step in the backward pass: memory bounded in syn_steps


def experts_fingerprint(experts: ExpertTrajectories) -> str:
    """The experts' identity: the first 12 hex digits of each expert file's SHA-256, joined by '+'."""
    return "+".join(str(e.get("sha256", ""))[:12] for e in experts.manifest["experts"])


def check_experts_match(experts: ExpertTrajectories, teacher_function: str, source_fingerprint: str) -> None:
    """The experts were trained on this teacher's representations of this source."""
    made_with = experts.manifest.get("teacher", {}).get("function_fingerprint")
    if made_with != teacher_function:
        raise ValueError(f"{experts.directory}: these expert trajectories regress another teacher's representations "
                         f"(teacher {experts.manifest.get('teacher', {}).get('path', '?')}); make experts with this "
                         f"teacher (`ssdd experts teacher=...`)")
    if experts.manifest.get("source", {}).get("fingerprint") != source_fingerprint:
        raise ValueError(f"{experts.directory}: these expert trajectories were trained on another source "
                         f"({experts.manifest.get('source', {}).get('name', '?')}); make experts on this one")


def check_expert_epochs(mk: Any, epochs: int) -> None:
    """The experts hold the epochs the matching reads: a start below max_start_epoch, expert_epochs after it."""
    need = mk.max_start_epoch - 1 + mk.expert_epochs
    if need > epochs:
        raise ConfigError(f"mkdt.max_start_epoch={mk.max_start_epoch} with mkdt.expert_epochs={mk.expert_epochs} "
                          f"needs {need} expert epochs; {mk.experts} has {epochs}")


def check_experts_folder(cfg: Any, teacher: Mapping[str, Any], available: int | None = None) -> ExpertTrajectories:
    """mkdt.experts is an intact expert-trajectories folder made with this teacher on a source of this size."""
    from ssdd.artifacts.files import ArtifactError

    try:
        experts = load_experts(cfg.mkdt.experts)
    except (FileNotFoundError, ArtifactError) as exc:
        raise ConfigError(f"mkdt.experts: {first_line(exc)}") from None
    if experts.manifest.get("teacher", {}).get("function_fingerprint") != teacher.get("function_fingerprint"):
        raise ConfigError(f"mkdt.experts={cfg.mkdt.experts}: made with another teacher "
                          f"({experts.manifest.get('teacher', {}).get('path', '?')}), not {cfg.teacher}")
    trained_on = experts.manifest.get("source", {}).get("images")
    if available is not None and trained_on is not None and int(trained_on) != available:
        raise ConfigError(f"mkdt.experts={cfg.mkdt.experts}: trained on {trained_on} source images "
                          f"({experts.manifest.get('source', {}).get('name', '?')}), this source has {available}")
    return experts


def init_indices(experts: ExpertTrajectories, m: int, how: str, n_source: int, seed: int) -> torch.Tensor:
    """The source images the distilled set starts from (sorted)."""
    if how == "random":
        return random_indices(n_source, m, torch.Generator().manual_seed(seed))
    scores = experts.sample_scores()
    if scores.numel() != n_source:
        raise ValueError(f"{experts.directory}: the experts scored {scores.numel()} images, the source has {n_source}")
    return torch.topk(scores, m).indices.sort().values


def distill_mkdt(ctx: DistillContext) -> DistillResult:
    cfg, mk, device, teacher = ctx.cfg, ctx.cfg.mkdt, ctx.device, ctx.teacher
    images_u8 = ctx.source.images
    n_source, image_shape = images_u8.shape[0], tuple(images_u8.shape[1:])
    experts = load_experts(mk.experts)
    check_experts_match(experts, teacher.function_fingerprint, ctx.source.fingerprint())
    check_expert_epochs(mk, experts.epochs)
    described = {k: v for k, v in (experts.manifest.get("model") or {}).items()
                 if k in ("name", "width", "depth", "feature")}
    student = seeded_member(ModelConfig(**described), image_shape[-1], teacher.feature_dim,
                            0).to(device)  # the experts' architecture; its weights come from their vectors
    flat = FlatModel(student)
    if flat.layout() != experts.layout:
        raise ValueError(f"{mk.experts}: the experts' parameter layout does not match their model "
                         f"({experts.manifest.get('model')}); the artifact was made by another version")
    m = teacher_target_samples(cfg, image_shape, teacher.feature_dim, n_source)
    with phase(f"initial images: {m} by {mk.init}"):
        index = init_indices(experts, m, mk.init, n_source, cfg.seed)
    chosen = images_u8[index.to(images_u8.device)]
    x_s = normalize(to_float(chosen), teacher.mean, teacher.std).clone().requires_grad_(True)
    y_s = teacher.encode(chosen).float().clone().requires_grad_(True)  # batched: any budget fits in memory
    lr = torch.tensor(float(mk.init_lr), device=device).requires_grad_(True)
    tensors = {"images": x_s, "targets": y_s, "lr": lr}
    lrs = {"images": mk.lr_images, "targets": mk.lr_targets, "lr": mk.lr_lr}
    rates = {"images": "mkdt.lr_images", "targets": "mkdt.lr_targets", "lr": "mkdt.lr_lr"}  # the settings of lrs
    optimizers = {key: torch.optim.SGD([tensor], lr=lrs[key], momentum=mk.momentum) for key, tensor in tensors.items()}
    generator = torch.Generator().manual_seed(cfg.seed)
    run = RunLoop(ctx.out_dir, total=mk.iterations, settings=tuple(rates.values()), stop_after=cfg.stop_after_steps,
                  log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every, at=lambda done: f"iteration {done}",
                  desc="mkdt", show_progress=ctx.show_progress, log=ctx.log, prefix="distill/",
                  time_limit_s=60 * cfg.stop_after_minutes, started=ctx.started)
    if ctx.resume:
        state = run.load()
        if state.get("experts_fingerprint") != experts_fingerprint(experts):
            raise ValueError(f"--resume: the expert trajectories changed since this run started ({mk.experts}); "
                             f"resume with the original ones, or start a fresh run in another out_dir")
        with torch.no_grad():
            for key, tensor in tensors.items():
                tensor.copy_(state["tensors"][key])
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
            for group in optimizer.param_groups:  # the current rate (a resume after a numerical stop may lower it)
                group["lr"] = lrs[key]
        generator.set_state(state["generator"])

    def step(step: int) -> float:
        expert = int(torch.randint(0, experts.count, (1,), generator=generator))
        epoch = int(torch.randint(0, mk.max_start_epoch, (1,), generator=generator))
        batches = [b.to(device) for b in minibatches(m, mk.batch_syn, mk.syn_steps, generator)]
        theta_start = experts.snapshot(expert, epoch).to(device)
        theta_target = experts.snapshot(expert, epoch + mk.expert_epochs).to(device)
        theta_end = unrolled_sgd(flat, theta_start, x_s, y_s, lr, batches, mk.recompute)
        loss = matching_loss(theta_end, theta_start, theta_target)
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[x_s, y_s, lr])
        if not torch.isfinite(loss) or not torch.isfinite(lr):
            raise Diverged(f"MKDT's matching loss became {loss.item()} (student lr {lr.item()}) at iteration "
                           f"{step + 1}",
                           rates["images"] if torch.isfinite(lr) else rates["lr"])
        for optimizer in optimizers.values():
            optimizer.step()
        return float(loss.detach())

    def state() -> dict[str, Any]:
        return {"config": config_to_dict(cfg), "tensors": {k: t.detach().cpu() for k, t in tensors.items()},
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()}, "generator": generator.get_state(),
                "experts_fingerprint": experts_fingerprint(experts)}

    run.run(step, state, record=lambda done: {"student_lr": float(lr.detach())},
            watch=lambda: [Watched(f"the distilled {key}" if key != "lr" else "the student's learning rate",
                                   tensors[key], rate) for key, rate in rates.items()])
    history, stop, elapsed = run.history, run.stop, run.elapsed
    with torch.no_grad():
        pixels = x_s.detach() * teacher.std.view(1, -1, 1, 1) + teacher.mean.view(1, -1, 1, 1)
    info: dict[str, Any] = {
        "m": m, "steps": mk.iterations, "steps_done": stop, "final_loss": history[-1]["loss"] if history else None,
        "distill_seconds": elapsed, "init": mk.init, "init_indices": index.tolist(),
        "learned_lr": float(lr.detach()),
        "experts": {"path": mk.experts, "fingerprint": experts_fingerprint(experts), "count": experts.count,
                    "epochs": experts.epochs, "model": experts.manifest.get("model"),
                    "seconds": experts.manifest.get("seconds")}}
    stored = {"images": pixels.cpu(), "targets": y_s.detach().cpu()}
    return DistillResult(stored, info, finished=stop >= mk.iterations)


def reconstruct_mkdt(stored: dict[str, torch.Tensor], manifest: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return stored["images"].float(), stored["targets"].float()


# ----------------------------------------------------------------------------- what ssdd asks MKDT
def check_mkdt_settings(cfg: Any) -> None:
    mk = cfg.mkdt
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


def check_mkdt_files(cfg: Any, teacher: Mapping[str, Any], available: int | None) -> None:
    check_expert_epochs(cfg.mkdt, check_experts_folder(cfg, teacher, available).epochs)


register_method(DistillMethod(
    "mkdt", distill_mkdt, reconstruct_mkdt, check=check_mkdt_settings, check_files=check_mkdt_files,
    samples=teacher_target_samples, verify=verify_teacher_targets, reads=("mkdt",), needs_experts=True,
    note="MKDT: learned images and targets, matched to knowledge-distillation trajectories", colour="tab:red",
    loss_name="matching loss (normalised parameter distance)"))
