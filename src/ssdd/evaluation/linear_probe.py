"""Frozen-feature evaluation: feature extraction and the linear probe of docs/protocol.md (stage 5).

The probe trains a linear head with SGD (momentum 0.9, no weight decay, cosine schedule) on cached
features. By default (`standardize=True`, a deviation from docs/protocol.md that every report states) the
features are first standardised with the train split's per-dimension mean and std: an affine
reparameterisation of the same linear head that lets one learning rate (0.2) suit every encoder,
whose raw feature scales differ by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssdd.artifacts.integrity import check_features, check_trained
from ssdd.augment.ops import normalize, to_float
from ssdd.run.progress import bar
from ssdd.run.runtime import to_device


@dataclass
class ProbeConfig:
    iterations: int = 5000
    lr: float = 0.2
    batch_size: int = 512
    momentum: float = 0.9
    weight_decay: float = 0.0
    standardize: bool = True  # standardise features with train mean/std first (a deviation: see module doc)


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     batch_size: int = 512, device: torch.device | None = None) -> torch.Tensor:
    """Encode uint8 (N,3,H,W) images in eval mode; returns float32 (N, d) features on `device`."""
    device = device or next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    mean, std = mean.to(device), std.to(device)
    chunks = []
    for start in bar(range(0, images.shape[0], batch_size), desc=f"features of {images.shape[0]:,} images",
                     unit="batch"):
        batch = normalize(to_float(images[start : start + batch_size].to(device)), mean, std)
        chunks.append(encoder(batch).float())
    encoder.train(was_training)
    return torch.cat(chunks)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, cfg: ProbeConfig | None = None,
                 seed: int = 0) -> dict[str, float]:
    """Train a linear classifier on frozen features; return train and test top-1 accuracy (percent)."""
    cfg = cfg or ProbeConfig()
    device = train_features.device
    check_features(train_features)  # NaN features would train a NaN head that scores as chance, silently
    check_features(test_features)
    x_train, x_test = train_features, test_features
    if cfg.standardize:
        mu = train_features.mean(dim=0, keepdim=True)
        sigma = train_features.std(dim=0, keepdim=True).clamp_min(1e-6)
        x_train, x_test = (train_features - mu) / sigma, (test_features - mu) / sigma
    y_train, y_test = train_labels.to(device), test_labels.to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        head = nn.Linear(x_train.shape[1], num_classes)  # initialised on the CPU from the seed
    head = head.to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.iterations))
    n = x_train.shape[0]
    batch = min(cfg.batch_size, n)
    # each pass's order goes to the device once (asynchronously), not a batch of it at every step
    order = to_device(torch.randperm(n, generator=generator), device)
    cursor = 0
    for _ in bar(range(cfg.iterations), desc="linear probe", unit="it"):
        if cursor + batch > n:
            order, cursor = to_device(torch.randperm(n, generator=generator), device), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        loss = F.cross_entropy(head(x_train[idx]), y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    check_trained(head, "the linear probe", "probe.lr")  # a rate too high for these features
    with torch.no_grad():
        train_top1 = (head(x_train).argmax(1) == y_train).float().mean().item() * 100
        test_top1 = (head(x_test).argmax(1) == y_test).float().mean().item() * 100
    return {"train_top1": train_top1, "test_top1": test_top1}


def probe_encoder(encoder: nn.Module, mean: torch.Tensor, std: torch.Tensor, train_images: torch.Tensor,
                  train_labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                  num_classes: int, cfg: ProbeConfig | None = None, seed: int = 0,
                  device: torch.device | None = None) -> dict[str, float]:
    """Extract frozen features of both splits and run `linear_probe` on them."""
    train_features = extract_features(encoder, train_images, mean, std, device=device)
    test_features = extract_features(encoder, test_images, mean, std, device=device)
    return linear_probe(train_features, train_labels, test_features, test_labels, num_classes, cfg, seed)
