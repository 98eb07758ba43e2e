"""Pre-training a fresh encoder by regression onto target representations (protocol stage 3)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssdd.augment import crop_flip, normalize, to_float
from ssdd.evaluation.config import FullDataConfig, PretrainConfig
from ssdd.evaluation.fastpath import EpochLosses, Forward, autocast, network_forward
from ssdd.run.folder import save_checkpoint
from ssdd.run.progress import bar
from ssdd.run.runtime import to_device


class PretrainCheckpoint:
    """Where a long pre-training (a full-data row: hundreds of epochs over the whole source) saves its state, at
    the end of an epoch once `every_s` seconds have passed since the last save (never: inf), and where the next
    attempt at the same cell (`ssdd evaluate --resume`) finds it and goes on from that epoch: on the CPU the same
    numbers as a pre-training never interrupted (tested), on a GPU to its kernels' rounding. A state saved on
    another kind of device is not taken up (its generators' states differ). Removed when the cell is finished."""

    def __init__(self, path: str | Path, every_s: float) -> None:
        self.path, self.every_s = Path(path), every_s
        self.last = time.perf_counter()

    def load(self, device: torch.device) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("device") != device.type:
            print(f"{self.path.name}: a pre-training state saved on {state.get('device')}, not {device.type}: "
                  f"this cell's pre-training starts afresh")
            return None
        return state

    def maybe_save(self, state: Callable[[], dict[str, Any]]) -> None:
        if time.perf_counter() - self.last >= self.every_s:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.path, state())
            self.last = time.perf_counter()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def steps_per_epoch(count: int, batch_size: int) -> int:
    """SGD steps in one pass over `count` images: every batch but a last one of a single image (BatchNorm)."""
    return count // batch_size + (1 if count % batch_size >= 2 else 0)


def epoch_batches(count: int, cfg: PretrainConfig, generator: torch.Generator, device: torch.device,
                  desc: str = "pre-training", start: int = 0) -> Iterator[list[torch.Tensor]]:
    """The index batches of each pre-training epoch over `count` pairs: a fresh permutation per epoch, batches of
    `cfg.batch_size` without a last one of a single pair (BatchNorm), `cfg.epochs` epochs, stopped after
    `cfg.max_iterations` steps in all when that is set. Shared by `pretrain_on_pairs` and `pretrain_supervised`,
    so that both take exactly `pretrain_steps` steps. `start`: the epochs already run (a resumed pre-training,
    whose generator is as those epochs left it)."""
    steps = start * steps_per_epoch(count, cfg.batch_size)  # epochs before `start` were whole ones
    for _ in bar(range(start, cfg.epochs), desc=desc, unit="epoch"):
        if 0 < cfg.max_iterations <= steps:
            return
        order = to_device(torch.randperm(count, generator=generator), device)
        batches: list[torch.Tensor] = []
        for first in range(0, count, cfg.batch_size):
            if 0 < cfg.max_iterations <= steps + len(batches):
                break
            idx = order[first : first + cfg.batch_size]
            if idx.numel() >= 2:
                batches.append(idx)
        steps += len(batches)
        yield batches


def pretrain_steps(count: int, cfg: PretrainConfig) -> int:
    """SGD steps that `pretrain_on_pairs` (and `pretrain_supervised`) take over `count` pairs: every batch of
    at least two pairs in `cfg.epochs` passes, stopped at `cfg.max_iterations` when that is set."""
    planned = cfg.epochs * steps_per_epoch(count, cfg.batch_size)
    return min(planned, cfg.max_iterations) if cfg.max_iterations > 0 else planned


def pretrain_samples(count: int, cfg: PretrainConfig) -> int:
    """Pairs that `pretrain_on_pairs` (and `pretrain_supervised`) pass through the network in all: the sizes of
    the batches of its `pretrain_steps` steps added up. A set smaller than the batch fills each batch with all of
    its pairs (steps x count); a larger one fills whole batches and a last, smaller one per epoch."""
    per_epoch = steps_per_epoch(count, cfg.batch_size)
    if per_epoch == 0:
        return 0
    epochs, rest = divmod(pretrain_steps(count, cfg), per_epoch)
    leftover = count % cfg.batch_size
    per_pass = count - (leftover if leftover < 2 else 0)  # without a last batch of a single pair
    return epochs * per_pass + rest * cfg.batch_size  # a capped last epoch stops before its smaller last batch


def full_data_batches(count: int, cfg: FullDataConfig) -> int:
    """Batches per epoch of `pretrain_full_data` over `count` source images: whole batches only (at least one)."""
    return max(1, count // cfg.batch_size)


def full_data_steps(count: int, cfg: FullDataConfig) -> int:
    """SGD steps of `pretrain_full_data` over `count` source images."""
    return cfg.epochs * full_data_batches(count, cfg)


def full_data_samples(count: int, cfg: FullDataConfig) -> int:
    """Images that `pretrain_full_data` passes through the network over `count` source images: every step one
    batch of `cfg.batch_size` (all `count` images when there are fewer)."""
    return full_data_steps(count, cfg) * min(cfg.batch_size, count)


def _network_inputs(images: torch.Tensor, mean: torch.Tensor,
                    std: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """idx -> the normalised network inputs of those images: float images are normalised once, uint8 ones (a
    whole source split) batch by batch, so that they are never all held as floats."""
    if images.dtype == torch.uint8:
        return lambda idx: normalize(to_float(images[idx]), mean, std)
    inputs = normalize(images, mean, std)
    return lambda idx: inputs[idx]


def pretrain_on_pairs(backbone: nn.Module, images: torch.Tensor, targets: torch.Tensor, mean: torch.Tensor,
                      std: torch.Tensor, cfg: PretrainConfig, generator: torch.Generator,
                      num_classes: int | None = None, precision: str = "fp32",
                      checkpoint: PretrainCheckpoint | None = None, forward: Forward = network_forward
                      ) -> list[float]:
    """MSE regression of head(backbone(norm(x))) onto targets, SGD, `cfg.epochs` passes over every pair
    (or until `cfg.max_iterations` steps when that is set), no augmentation; integer targets are class
    labels and use cross-entropy over `num_classes` instead. `precision` (fp32 | bf16) is the forward pass's
    (ssdd.evaluation.fastpath.autocast); the loss is float32 either way. `checkpoint`: resume from it, and save
    to it as it asks (PretrainCheckpoint). `forward(backbone, x)` runs the backbone (NetworkForwards: compiled
    under `compile`).
    images: (M,3,H,W) float in [0,1], or uint8; returns the mean loss of each epoch."""
    device = images.device
    classify = not targets.is_floating_point()
    if classify and not num_classes:
        raise ValueError("integer targets (labels) need num_classes")
    head = nn.Linear(backbone.feature_dim, num_classes if classify else targets.shape[1]).to(device)
    criterion = F.cross_entropy if classify else F.mse_loss
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    inputs = _network_inputs(images, mean, std)
    backbone.train()
    losses = EpochLosses(device)
    count = images.shape[0]
    start, earlier, _ = _resume(checkpoint, backbone, head, optimizer, generator)
    for epoch, batches in enumerate(epoch_batches(count, cfg, generator, device, start=start), start):
        losses.new_epoch()
        for idx in batches:
            with autocast(device, precision):
                outputs = head(forward(backbone, inputs(idx)))
            loss = criterion(outputs.float(), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.add(loss, idx.numel())
        if checkpoint is not None:
            checkpoint.maybe_save(lambda done=epoch + 1: _state(done, earlier + losses.means(count), backbone, head,
                                                                optimizer, generator))
    return earlier + losses.means(count)


def _state(epochs: int, losses: list[float], backbone: nn.Module, head: nn.Module, optimizer: torch.optim.Optimizer,
           generator: torch.Generator, **more: Any) -> dict[str, Any]:
    """A pre-training's state after `epochs` epochs (PretrainCheckpoint): networks, optimiser, generators."""
    return {"epoch": epochs, "losses": losses, "backbone": backbone.state_dict(), "head": head.state_dict(),
            "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
            "device": next(backbone.parameters()).device.type, **more}


def _resume(checkpoint: PretrainCheckpoint | None, backbone: nn.Module, head: nn.Module,
            optimizer: torch.optim.Optimizer, generator: torch.Generator
            ) -> tuple[int, list[float], dict[str, Any] | None]:
    """(epochs already run, their mean losses, the state) after restoring a checkpoint's networks, optimiser and
    generator, or (0, [], None) without one."""
    state = checkpoint.load(next(backbone.parameters()).device) if checkpoint is not None else None
    if state is None:
        return 0, [], None
    backbone.load_state_dict(state["backbone"])
    head.load_state_dict(state["head"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return int(state["epoch"]), list(state["losses"]), state


def pretrain_full_data(backbone: nn.Module, images_u8: torch.Tensor, teacher: Callable[[torch.Tensor], torch.Tensor],
                       mean: torch.Tensor, std: torch.Tensor, cfg: FullDataConfig,
                       generator: torch.Generator, precision: str = "fp32",
                       checkpoint: PretrainCheckpoint | None = None, forward: Forward = network_forward
                       ) -> list[float]:
    """Regress teacher(x) from crop+flipped source images, SGD with cosine decay over cfg.epochs. `precision`
    (fp32 | bf16) is that of the forward passes, the teacher's included (its targets are then widened to float32);
    the loss is float32 either way. `forward(backbone, x)` runs the backbone (the teacher's forward stays eager)."""
    device = images_u8.device
    with torch.no_grad():
        target_dim = teacher(to_float(images_u8[:2])).shape[1]
    head = nn.Linear(backbone.feature_dim, target_dim).to(device)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    batches = full_data_batches(images_u8.shape[0], cfg)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                          T_max=max(1, full_data_steps(images_u8.shape[0], cfg)))
    aug_gen = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    backbone.train()
    losses = EpochLosses(device)
    start, earlier, state = _resume(checkpoint, backbone, head, optimizer, generator)
    if state is not None:
        schedule.load_state_dict(state["schedule"])
        aug_gen.set_state(state["aug_generator"])
    for epoch in bar(range(start, cfg.epochs), desc="full-data pre-training", unit="epoch"):
        order = to_device(torch.randperm(images_u8.shape[0], generator=generator), device)
        losses.new_epoch()
        for step in range(batches):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = crop_flip(to_float(images_u8[idx]), cfg.crop_padding, aug_gen)
            with autocast(device, precision):  # the teacher's forward too: more multiply-adds than the step
                with torch.no_grad():
                    y = teacher(x)
                outputs = head(forward(backbone, normalize(x, mean, std)))
            loss = F.mse_loss(outputs.float(), y.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.add(loss)
        if checkpoint is not None:
            checkpoint.maybe_save(lambda done=epoch + 1: _state(done, earlier + losses.means(batches), backbone, head,
                                                                optimizer, generator, schedule=schedule.state_dict(),
                                                                aug_generator=aug_gen.get_state()))
    return earlier + losses.means(batches)
