"""Fine-tuning all layers with a new linear head on a labelled target (protocol stage 4)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ssdd.artifacts.integrity import check_trained
from ssdd.augment import crop_flip, normalize, to_float
from ssdd.data import ImageDataset
from ssdd.evaluation.config import FinetuneConfig
from ssdd.evaluation.fastpath import Forward, autocast, network_forward
from ssdd.run.progress import bar, note, showing
from ssdd.run.runtime import to_device

# (target, finetune.batch_size, training images) whose full-batch fine-tuning this process has already noted
_NOTED: set[tuple[str, int, int]] = set()


def _canonical(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def is_source_scale(target: str, cfg: FinetuneConfig) -> bool:
    """Whether a target's name is one of `cfg.source_scale` (without case, "-" read as "_")."""
    return _canonical(target) in {_canonical(name) for name in cfg.source_scale}


def finetune_iterations(cfg: FinetuneConfig, train_size: int, target: str = "") -> int:
    """small_by=role: `iterations` for a source-scale target (by its name, `cfg.source_scale`) and
    `small_iterations` for every other one; small_by=size: `small_iterations` below `small_threshold`
    training images."""
    small = not is_source_scale(target, cfg) if cfg.small_by == "role" else train_size < cfg.small_threshold
    return cfg.small_iterations if small else cfg.iterations


def fitted_batch(cfg: FinetuneConfig, train_size: int, target: str) -> int:
    """`cfg.batch_size`, or all `train_size` images when the split holds fewer (every step full-batch). Like
    pre-training and the linear probe, fine-tuning keeps running: one batch_size serves targets of any size, and
    refusing would rule out a small target. A progress note says so, once per target in a process."""
    if cfg.batch_size <= train_size:
        return cfg.batch_size
    key = (target, cfg.batch_size, train_size)
    if key not in _NOTED and showing():
        _NOTED.add(key)
        note(f"note: finetune.batch_size={cfg.batch_size} exceeds the {train_size} training images of {target}: "
             f"its fine-tuning steps are full-batch ({train_size} images)")
    return train_size


@torch.no_grad()
def accuracy(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             batch_size: int = 1024) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=labels.device)  # counted on the device, read once
    for start in range(0, images_u8.shape[0], batch_size):
        x = normalize(to_float(images_u8[start : start + batch_size]), mean, std)
        correct += (model(x).argmax(1) == labels[start : start + batch_size]).sum()
    return 100.0 * int(correct) / images_u8.shape[0]


def finetune(backbone: nn.Module, train: ImageDataset, test: ImageDataset, mean: torch.Tensor, std: torch.Tensor,
             cfg: FinetuneConfig, generator: torch.Generator, target: str = "",
             train_size: int | None = None, precision: str = "fp32",
             forward: Forward = network_forward) -> dict[str, float]:
    """Fine-tune a copy of `backbone` (the original is untouched); returns test top-1 and the iterations run.
    train/test must already be on the training device; mean/std are the target's statistics; `target` is
    its name (default: the train split's), which sets the iterations under finetune.small_by=role;
    `train_size` (default: len(train)) the target's training images under small_by=size, so that training on
    part of the split (the validation split's rest) keeps the length the whole split gets. `precision` (fp32 |
    bf16) is the training steps' forward pass (the loss is float32 either way); the test pass is float32.
    `forward(copy, x)` runs the copy in the training steps (compiled under `compile`; the head stays eager)."""
    device = train.images.device
    model = nn.Sequential(copy.deepcopy(backbone), nn.Linear(backbone.feature_dim, train.num_classes)).to(device)
    tuned, head = model
    iterations = finetune_iterations(cfg, len(train) if train_size is None else train_size, target or train.name)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, iterations))
    aug_gen = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    batch = fitted_batch(cfg, len(train), target or train.name)
    model.train()
    order, cursor = to_device(torch.randperm(len(train), generator=generator), device), 0
    for _ in bar(range(iterations), desc="fine-tune", unit="it"):
        if cursor + batch > len(train):
            order, cursor = to_device(torch.randperm(len(train), generator=generator), device), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        x = normalize(crop_flip(to_float(train.images[idx]), cfg.crop_padding, aug_gen), mean, std)
        with autocast(device, precision):
            logits = head(forward(tuned, x))
        loss = F.cross_entropy(logits.float(), train.labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    check_trained(model, "fine-tuning", "finetune.lr")  # a NaN network would score as chance, silently
    return {"top1": accuracy(model, test.images, test.labels, mean, std), "iterations": float(iterations)}
