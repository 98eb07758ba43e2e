"""Pre-training on a distilled set whose targets are class labels, by KRR-ST's recipe (protocol stage 3).

KRR-ST pre-trains its supervised baselines (random, k-means and label-distilled subsets) with cross-entropy,
SGD (lr 0.01, momentum 0.9, weight decay 5e-4, batch 256), 1,000 epochs with the lr divided by 10 after half
of them, and one DSA operation per batch (ssdd.augment.dsa). `pretrain.supervised` holds these settings;
`pretrain.supervised.recipe=same` sends label sets to `pretrain_on_pairs` instead (ssdd.evaluation.cell).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssdd.augment import normalize
from ssdd.augment.dsa import dsa
from ssdd.evaluation.config import PretrainConfig, SupervisedPretrainConfig
from ssdd.evaluation.fastpath import EpochLosses, Forward, autocast, network_forward
from ssdd.evaluation.pretrain import epoch_batches, steps_per_epoch


def uses_supervised_recipe(targets: torch.Tensor, cfg: PretrainConfig) -> bool:
    """True for class-label targets (integers) when pretrain.supervised.recipe is krr_st."""
    return not targets.is_floating_point() and cfg.supervised.recipe == "krr_st"


def lr_drop_step(count: int, cfg: PretrainConfig) -> int:
    """The first step that runs at the dropped lr: after `lr_drop_at` of the epochs (KRR-ST's MultiStepLR,
    milestone epochs // 2), or of the steps actually run when `max_iterations` stops training earlier."""
    per_epoch = steps_per_epoch(count, cfg.batch_size)
    planned = cfg.epochs * per_epoch
    if 0 < cfg.max_iterations < planned:
        return int(cfg.max_iterations * cfg.supervised.lr_drop_at)
    return int(cfg.epochs * cfg.supervised.lr_drop_at) * per_epoch


def lr_at(step: int, drop_step: int, cfg: SupervisedPretrainConfig) -> float:
    """The lr of SGD step `step` (0-based)."""
    return cfg.lr * (cfg.lr_drop if step >= drop_step else 1.0)


def pretrain_supervised(backbone: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
                        std: torch.Tensor, cfg: PretrainConfig, generator: torch.Generator,
                        num_classes: int, precision: str = "fp32", forward: Forward = network_forward) -> list[float]:
    """Cross-entropy of a new linear head on backbone(aug(norm(x))) against the labels, `cfg.epochs` passes
    (or until `cfg.max_iterations` steps), with the optimiser, lr drop and augmentation of `cfg.supervised`;
    `precision` (fp32 | bf16) is the forward pass's, the loss is float32 either way; `forward(backbone, x)` runs
    the backbone (compiled under `compile`).
    images: (M,3,H,W) float in [0,1]; labels: (M,) integers; returns the mean loss of each epoch."""
    if labels.is_floating_point():
        raise ValueError("pretrain_supervised needs integer class labels")
    if not num_classes:
        raise ValueError("integer targets (labels) need num_classes")
    sup, device = cfg.supervised, images.device
    network = nn.Sequential(backbone, nn.Linear(backbone.feature_dim, num_classes).to(device))
    optimizer = torch.optim.SGD(network.parameters(), lr=sup.lr, momentum=sup.momentum, weight_decay=sup.weight_decay)
    aug_gen = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    inputs = normalize(images, mean, std)
    count, drop_step, step = images.shape[0], lr_drop_step(images.shape[0], cfg), 0
    network.train()
    losses = EpochLosses(device)
    for batches in epoch_batches(count, cfg, generator, device, desc="pre-training (labels)"):
        losses.new_epoch()
        for idx in batches:
            x = dsa(inputs[idx], aug_gen) if sup.augment == "dsa" else inputs[idx]
            loss = _sgd_step(network, optimizer, x, labels[idx], lr_at(step, drop_step, sup), precision, forward)
            losses.add(loss, idx.numel())
            step += 1
    return losses.means(count)


def _sgd_step(network: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              lr: float, precision: str, forward: Forward = network_forward) -> torch.Tensor:
    """One cross-entropy step of `network` (backbone, head) at learning rate `lr`; returns the batch's loss (on the
    device, not read)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(x.device, precision):
        logits = network[1](forward(network[0], x))
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss
