"""Barlow Twins (Zbontar et al., 2021): projector and loss."""

from __future__ import annotations

import torch
from torch import nn


def projector(in_dim: int, dims: list[int]) -> nn.Sequential:
    """Linear -> BN -> ReLU between layers, last layer a plain Linear (512 -> 2048 -> 2048 -> 2048)."""
    if not dims:
        raise ValueError("the projector needs at least one layer")
    layers: list[nn.Module] = []
    width = in_dim
    for index, out in enumerate(dims):
        last = index == len(dims) - 1
        layers.append(nn.Linear(width, out, bias=last))
        if not last:
            layers += [nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
        width = out
    return nn.Sequential(*layers)


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension standardisation over the batch (BatchNorm1d without affine, biased variance)."""
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 0.0051,
                      scale: float = 0.1) -> torch.Tensor:
    """scale * [ sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2 ], C the cross-correlation of the
    batch-standardised embeddings (computed in float32 whatever the autocast dtype)."""
    z1, z2 = standardize(z1.float()), standardize(z2.float())
    corr = z1.T @ z2 / z1.shape[0]
    on_diag = (torch.diagonal(corr) - 1).pow(2).sum()
    off_diag = corr.pow(2).sum() - torch.diagonal(corr).pow(2).sum()
    return scale * (on_diag + lambda_offdiag * off_diag)
