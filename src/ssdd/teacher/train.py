"""`ssdd teacher`: Barlow Twins pre-training of the teacher, with checkpoint/resume and DDP.

Data stays on the device as uint8; each step indexes a batch, makes two augmented views on the device
and takes one LARS step. A linear classifier on detached features monitors progress online. Every
epoch ends with an atomic checkpoint (weights, optimiser, RNG states) so --resume continues exactly.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ssdd.artifacts.files import ArtifactError
from ssdd.artifacts.integrity import DivergedError
from ssdd.config import config_to_dict, save_config
from ssdd.data import channel_stats, load_split
from ssdd.evaluation.linear_probe import probe_encoder
from ssdd.models import build_model, describe
from ssdd.run import distributed as D
from ssdd.run.checks import batch_fits
from ssdd.run.compiled import switch
from ssdd.run.folder import claim, holds_out_dir
from ssdd.run.guard import TEACHER_FINISH_KEYS, check_inputs, check_resume, numerical_stop, resume_changes
from ssdd.run.loop import RunLoop
from ssdd.run.progress import phase, progress_bar, show_phases
from ssdd.run.runtime import channels_last as use_channels_last
from ssdd.run.runtime import resolve_device, seed_everything, versions, write_json
from ssdd.run.tblog import ScalarLog, require_tensorboard
from ssdd.teacher.artifact import save_teacher
from ssdd.teacher.barlow_twins import barlow_twins_loss, projector
from ssdd.teacher.config import RESUMABLE_KEYS, TeacherConfig
from ssdd.teacher.lars import LARS
from ssdd.teacher.schedule import warmup_cosine
from ssdd.teacher.step import (
    FAST_SYNC_EVERY,
    PLAIN_BAR_EVERY,
    StepLog,
    model_forward,
    optimizer_step,
    views_maker,
)
from ssdd.teacher.validate import training_images, validate_teacher


class BarlowTwinsModel(nn.Module):
    """Backbone + projector + online linear monitor; one forward call for both views (DDP-friendly)."""

    def __init__(self, backbone: nn.Module, projector_dims: list[int], num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector(backbone.feature_dim, projector_dims)
        self.monitor = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f1, f2 = self.backbone(view1), self.backbone(view2)
        return self.projector(f1), self.projector(f2), self.monitor(f1.detach())


def forward_loss(forward: Callable[..., Any], view1: torch.Tensor, view2: torch.Tensor, labels: torch.Tensor,
                 cfg: TeacherConfig, amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Barlow Twins loss over every process's embeddings, the monitor's cross-entropy, the monitor's logits)."""
    with torch.autocast(view1.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        z1, z2, logits = forward(view1, view2)
    ssl_loss = barlow_twins_loss(D.gather_with_grad(z1), D.gather_with_grad(z2), cfg.loss.lambda_offdiag,
                                 cfg.loss.scale)
    return ssl_loss, F.cross_entropy(logits.float(), labels), logits


def build_optimizer(cfg: TeacherConfig, model: BarlowTwinsModel, global_batch: int, foreach: bool) -> LARS:
    """LARS over backbone and projector at optim.lr scaled linearly to the global batch (`base_lr` of group 0),
    and plain SGD with momentum for the online monitor (group 1: no LARS, no weight decay)."""
    base_lr = cfg.optim.lr * global_batch / 256
    return LARS([
        {"params": [*model.backbone.parameters(), *model.projector.parameters()], "base_lr": base_lr},
        {"params": model.monitor.parameters(), "base_lr": cfg.optim.monitor_lr, "lars": False, "weight_decay": 0.0},
    ], lr=base_lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay, eta=cfg.optim.lars_eta,
       clip_lr=cfg.optim.lars_clip_lr, foreach=foreach)


def autocast_dtype(cfg: TeacherConfig, device: torch.device) -> torch.dtype | None:
    """The forward's autocast dtype of the `precision` setting on `device` (None: float32, no autocast)."""
    if cfg.precision == "fp32" or (cfg.precision == "auto" and device.type != "cuda"):
        return None
    if cfg.precision in ("bf16", "auto"):
        return torch.bfloat16
    raise ValueError(f"precision must be auto, bf16 or fp32, got '{cfg.precision}'")


@holds_out_dir
def train_teacher(cfg: TeacherConfig, resume: bool = False, show_progress: bool = True) -> Path | None:
    """Train (or resume) a teacher; returns the artifact folder when training finished, else None."""
    started = time.perf_counter()  # stop_after_minutes counts from here
    claim(cfg.out_dir, "teacher", resume)  # never another run's folder; --resume needs a checkpoint
    validate_teacher(cfg, resume)  # every setting, split, device and the output folder, before any work
    require_tensorboard(cfg.tensorboard)  # one line, before any work, when the package is missing
    dist_info = D.init_distributed(cfg.device)
    tb = ScalarLog(cfg.tensorboard, dist_info.is_main)
    try:
        with show_phases(show_progress and dist_info.is_main):
            return _train(cfg, resume, show_progress, dist_info, tb, started)
    except FloatingPointError as exc:
        if isinstance(exc, (ArtifactError, DivergedError)):  # a NaN tensor to save, a NaN probe: not the loss
            raise
        raise numerical_stop(cfg.out_dir, exc, "optim.lr") from None  # true about the checkpoint; lr may change
    finally:
        tb.close()
        D.shutdown()


def _train(cfg: TeacherConfig, resume: bool, show_progress: bool, dist_info: D.DistInfo,
           tb: ScalarLog | None = None, started: float | None = None) -> Path | None:
    tb = tb or ScalarLog()
    device = resolve_device(cfg.device, dist_info.local_rank)
    out_dir = Path(cfg.out_dir)
    if cfg.optim.batch_size % dist_info.world_size:
        raise ValueError(f"optim.batch_size {cfg.optim.batch_size} is not divisible by "
                         f"{dist_info.world_size} processes")
    if device.type != "cuda" and cfg.optim.batch_size // dist_info.world_size < 2:  # BatchNorm is per process there
        raise ValueError(f"optim.batch_size {cfg.optim.batch_size} gives each of the {dist_info.world_size} processes "
                         f"fewer than 2 images, and BatchNorm on the CPU needs 2 per process: raise optim.batch_size")
    seed_everything(cfg.seed)

    train_set = load_split(cfg.data, cfg.data.train_split, seed=cfg.seed)
    batch_fits("optim.batch_size", cfg.optim.batch_size, len(train_set), training_images(cfg))  # digits, torchvision
    check_inputs(out_dir, resume, {"data": train_set.fingerprint()},
                 {"data": f"training data ({cfg.data.path} [{cfg.data.train_split}])"})
    mean_list, std_list = channel_stats(train_set.images)
    mean, std = torch.tensor(mean_list, device=device), torch.tensor(std_list, device=device)
    # unlabelled images: the online monitor gets one class (its loss is 0 and it moves nothing) and is not shown
    labelled = train_set.labelled
    images = train_set.images.to(device)
    labels = train_set.labels.to(device) if labelled else torch.zeros(len(train_set), dtype=torch.int64, device=device)
    n_images = images.shape[0]
    global_batch, local_batch = cfg.optim.batch_size, cfg.optim.batch_size // dist_info.world_size
    steps_per_epoch = n_images // global_batch  # at least 1: the batch fits the training images (batch_fits)
    total_steps = steps_per_epoch * cfg.optim.epochs

    fast = switch(cfg.fast, "fast", device)  # no host synchronisation per step (docs/performance.md)
    model = BarlowTwinsModel(build_model(cfg.model, cfg.data.resolution), cfg.projector, max(train_set.num_classes, 1))
    channels_last = use_channels_last(cfg.channels_last)  # measured faster on CUDA and on CPU (docs/performance.md)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    wrapped: nn.Module = model
    if dist_info.enabled:
        if device.type == "cuda":
            wrapped = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(cfg, model, global_batch, fast)
    base_lr = optimizer.param_groups[0]["base_lr"]
    amp_dtype = autocast_dtype(cfg, device)
    forward, views = model_forward(wrapped, cfg.compile, device), views_maker(cfg.compile, device, fast)
    aug_generator = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + dist_info.rank + 1)

    resolved = config_to_dict(cfg)
    run = RunLoop(out_dir, total=cfg.optim.epochs, settings=("optim.lr",), stop_after=cfg.stop_after_epochs,
                  counter="epoch", is_main=dist_info.is_main, log=tb, prefix="teacher/",
                  tb_step=lambda done: done * steps_per_epoch, barrier=True, shared=dist_info.world_size > 1,
                  time_limit_s=60 * cfg.stop_after_minutes, started=started)
    if resume:
        state = run.load()
        check_resume(out_dir, state["config"], resolved, (*RESUMABLE_KEYS, *TEACHER_FINISH_KEYS),
                     at=f"epoch {state['epoch']}", after_numerical_stop=("optim.lr",))
        if state["world_size"] != dist_info.world_size:
            raise ValueError(f"checkpoint written by {state['world_size']} processes; resume with the same number")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        optimizer.param_groups[0]["base_lr"] = base_lr  # the current optim.lr (it may change after a NaN stop)
        aug_generator.set_state(state["aug_generator"][dist_info.rank])
        torch.set_rng_state(state["cpu_rng"])
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    # x-axis: optimiser steps; a resumed run drops what the interrupted one logged after its checkpoint
    tb.open(out_dir, purge_step=run.start * steps_per_epoch + 1 if resume else 0)

    warmup_steps = cfg.optim.warmup_epochs * steps_per_epoch
    wrapped.train()
    probe_data: tuple[Any, Any] | None = None  # loaded at the first probe
    generator_states: list[Any] = []  # every rank's augmentation generator after the last epoch

    def train_epoch(epoch: int) -> dict[str, Any]:
        nonlocal probe_data, generator_states
        order = torch.randperm(n_images, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch)).to(device)
        log, seen = StepLog(steps_per_epoch, device), 0
        epoch_start = time.perf_counter()
        bar = progress_bar(range(steps_per_epoch), desc=f"teacher epoch {epoch + 1}/{cfg.optim.epochs}",
                           disable=not (show_progress and dist_info.is_main), leave=False, dynamic_ncols=True)
        for step in bar:
            global_step = epoch * steps_per_epoch + step
            scale = warmup_cosine(global_step, total_steps, warmup_steps, 1.0, cfg.optim.min_lr / max(base_lr, 1e-12),
                                  cfg.optim.warmup_start_lr / max(base_lr, 1e-12))
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * scale
            start = step * global_batch + dist_info.rank * local_batch
            idx = order[start : start + local_batch]
            view1, view2 = views(images[idx], cfg.augment, aug_generator, mean, std, channels_last, fast)
            batch_labels = labels[idx]
            ssl_loss, monitor_loss, logits = forward_loss(forward, view1, view2, batch_labels, cfg, amp_dtype)
            optimizer_step(optimizer, ssl_loss + monitor_loss)
            log.record(step, ssl_loss, logits, batch_labels)
            seen += idx.numel()
            if not fast or step % FAST_SYNC_EVERY == 0:  # the plain path stops at the step whose loss is NaN
                log.check(step + 1, epoch)  # the fast one a few steps later: the checkpoint is per epoch anyway
            if cfg.tensorboard_every > 0 and (global_step + 1) % cfg.tensorboard_every == 0:
                tb.scalars({"loss": log.loss(step), "lr": optimizer.param_groups[0]["lr"]}, global_step + 1,
                           prefix="teacher/step/")
            if step % (FAST_SYNC_EVERY if fast else PLAIN_BAR_EVERY) == 0:
                loss_sum, correct = log.totals(step + 1)
                rate = seen * dist_info.world_size / max(time.perf_counter() - epoch_start, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / (step + 1):.3f}",
                                monitor=f"{100 * correct / seen:.1f}%" if labelled else "-", img_s=f"{rate:.0f}")
        log.check(steps_per_epoch, epoch)
        loss_sum, correct = log.totals(steps_per_epoch)
        epoch_time = time.perf_counter() - epoch_start
        record = {
            "epoch": epoch + 1,
            "loss": D.all_reduce_mean(loss_sum / steps_per_epoch, device),
            "monitor_top1": D.all_reduce_mean(100 * correct / seen, device) if labelled else None,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": steps_per_epoch * global_batch / epoch_time,
            "epoch_s": epoch_time,
        }
        if dist_info.is_main and cfg.probe_every > 0 and (epoch + 1) % cfg.probe_every == 0 \
                and epoch + 1 < cfg.optim.epochs and train_set.labelled:  # the last epoch's: the final one (_finish)
            probe_data = probe_data or _probe_data(cfg, train_set)
            try:
                if probe_data is not None:  # None: the test split has no labels
                    record["probe_top1"] = _probe(cfg, model.backbone, probe_data, mean, std, device)["test_top1"]
            except FloatingPointError as exc:  # a diverged probe (NaN features): the curve skips it, training goes on
                print(f"ssdd teacher: warning: the probe after epoch {epoch + 1} failed ({exc}); training continues",
                      file=sys.stderr)
            wrapped.train()
        generator_states = D.all_gather_objects(aug_generator.get_state())
        if dist_info.is_main:
            probed = f"  probe {record['probe_top1']:.2f}%" if "probe_top1" in record else ""
            monitor = f"  monitor {record['monitor_top1']:.1f}%" if labelled else ""
            tqdm.write(f"epoch {epoch + 1}/{cfg.optim.epochs}  loss {record['loss']:.4f}"
                       f"{monitor}{probed}  {record['images_per_s']:.0f} img/s")
        return record

    def state() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "aug_generator": generator_states,
                "cpu_rng": torch.get_rng_state(), "config": resolved, "world_size": dist_info.world_size}

    run.run(train_epoch, state)
    if not run.finished:
        if dist_info.is_main:
            why = f" (stop_after_minutes={cfg.stop_after_minutes:g})" if run.timed_out else ""
            print(f"stopped after epoch {run.stop}/{cfg.optim.epochs}{why}; continue with --resume")
        return None
    D.check_replicas_agree(model.backbone.parameters(), "DDP replicas (backbone parameters)")
    if not dist_info.is_main:
        return None
    path = _finish(cfg, model.backbone, probe_data or _probe_data(cfg, train_set), train_set, mean, std,
                   run.history, run.elapsed, dist_info, device)
    probe = json.loads((path / "manifest.json").read_text())["linear_probe"]
    if probe["top1"] is not None:
        tb.scalars({"linear_probe_top1": probe["top1"]}, cfg.optim.epochs * steps_per_epoch, prefix="teacher/")
    return path


def as_saved(backbone: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy whose floating-point weights and buffers went through `dtype` and back, as load_teacher sees them."""
    if dtype == torch.float32:
        return backbone
    rounded = copy.deepcopy(backbone)
    with torch.no_grad():
        for tensor in [*rounded.parameters(), *rounded.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype).to(tensor.dtype))
    return rounded


def _save_dtype(cfg: TeacherConfig) -> torch.dtype:
    dtype = {"float32": torch.float32, "float16": torch.float16}.get(cfg.save_dtype)
    if dtype is None:
        raise ValueError(f"save_dtype must be float32 or float16, got '{cfg.save_dtype}'")
    return dtype


def _probe_data(cfg: TeacherConfig, train_set: Any) -> tuple[Any, Any] | None:
    """The probe's train split (all of it, also when the teacher trains on a subset) and test split; None when
    either has no labels (nothing to probe with)."""
    if not train_set.labelled:
        return None
    full = train_set if cfg.data.subset == 0 else load_split(replace(cfg.data, subset=0), cfg.data.train_split,
                                                              seed=cfg.seed)
    test = load_split(cfg.data, cfg.data.test_split, seed=cfg.seed)
    return (full, test) if test.labelled else None


def _probe(cfg: TeacherConfig, backbone: nn.Module, data: tuple[Any, Any], mean: torch.Tensor, std: torch.Tensor,
           device: torch.device) -> dict[str, Any]:
    """Linear probe of the backbone with its weights as saved (cfg.save_dtype) on `_probe_data`'s splits; the
    global RNGs are left as they were, so a probe during training changes nothing that follows. Adds
    `seconds`, `test_name` and `test_split` to probe_encoder's result."""
    probe_train, test_set = data
    start = time.perf_counter()
    with phase(f"linear probe of the teacher on {test_set.name} ({len(probe_train):,} train, {len(test_set):,} "
               f"test images, {cfg.probe.iterations:,} iterations)"), \
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        probe = probe_encoder(as_saved(backbone, _save_dtype(cfg)), mean, std, probe_train.images,
                              probe_train.labels, test_set.images, test_set.labels, probe_train.num_classes,
                              cfg.probe, seed=cfg.seed, device=device)
    return {**probe, "seconds": time.perf_counter() - start, "test_name": test_set.name, "test_split": test_set.split}


def _finish(cfg: TeacherConfig, backbone: nn.Module, probe_data: tuple[Any, Any] | None, train_set: Any,
            mean: torch.Tensor,
            std: torch.Tensor, history: list[dict[str, Any]], elapsed: float, dist_info: D.DistInfo,
            device: torch.device) -> Path:
    out_dir = Path(cfg.out_dir)
    dtype = _save_dtype(cfg)
    if probe_data is None:
        unlabelled = cfg.data.train_split if not train_set.labelled else cfg.data.test_split
        linear_probe: dict[str, Any] = {"top1": None, "note": f"not measured: split {unlabelled} has no labels"}
        print(f"linear probe: not measured (split {unlabelled} has no labels)")
    else:
        probe = _probe(cfg, backbone, probe_data, mean, std, device)
        if cfg.probe_every > 0 and history:
            history[-1]["probe_top1"] = probe["test_top1"]  # the last point of the probe curve
        print(f"linear probe on {probe['test_name']}[{probe['test_split']}]: top-1 {probe['test_top1']:.2f}% "
              f"(train {probe['train_top1']:.2f}%)")
        linear_probe = {"top1": probe["test_top1"], "train_top1": probe["train_top1"], "dataset": probe["test_name"],
                        "split": probe["test_split"], "seconds": probe["seconds"],
                        "method": f"SGD on frozen standardised features, {cfg.probe.iterations} iterations",
                        "weights": f"as saved ({cfg.save_dtype}), computed in float32"}
    last = history[-1] if history else {}
    manifest = {
        "model": describe(cfg.model),
        "feature_dim": backbone.feature_dim,
        "resolution": cfg.data.resolution,
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
        "epochs": cfg.optim.epochs,
        "linear_probe": linear_probe,
        "final_loss": last.get("loss"),
        "monitor_top1": last.get("monitor_top1"),
        "train_images": len(train_set),
        "data_fingerprint": train_set.fingerprint(),
        "wall_clock_s": elapsed,
        "images_per_s": sum(h["images_per_s"] for h in history) / max(1, len(history)),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": dist_info.world_size,
        "versions": versions(),
        "config": config_to_dict(cfg),
    }
    if changes := resume_changes(out_dir):
        manifest["resumed_with_changes"] = changes  # settings a --resume changed (none alter the training)
    save_teacher(out_dir / "teacher", backbone, manifest, dtype=dtype)
    write_json(out_dir / "history.json", history)
    _plot_history(history, out_dir / "teacher_curves.png")
    print(f"teacher saved to {out_dir / 'teacher'}")
    return out_dir / "teacher"


def _plot_history(history: list[dict[str, Any]], path: Path) -> None:
    if not history:
        return
    from ssdd.report.plots import pyplot, save_figure

    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    monitored = all(h.get("monitor_top1") is not None for h in history)  # not: data without labels
    probed = [h for h in history if "probe_top1" in h]
    fig, axes = plt.subplots(1, 2 if monitored or probed else 1, figsize=(9 if monitored or probed else 4.5, 3.2),
                             squeeze=False)
    ax_loss = axes[0][0]
    ax_loss.plot(epochs, [h["loss"] for h in history])
    ax_loss.set(xlabel="epoch", ylabel="Barlow Twins loss", title="training loss")
    if not (monitored or probed):
        fig.tight_layout()
        save_figure(fig, path)
        return
    ax_acc = axes[0][1]
    if monitored:
        ax_acc.plot(epochs, [h["monitor_top1"] for h in history], color="tab:orange",
                    label="online monitor (train views)")
    if probed:
        ax_acc.plot([h["epoch"] for h in probed], [h["probe_top1"] for h in probed], "o-", color="tab:green",
                    label="linear probe (test, weights as saved)")
        ax_acc.legend(fontsize=8)
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="linear evaluation" if probed else
               "online linear monitor (train views)")
    fig.tight_layout()
    save_figure(fig, path)
