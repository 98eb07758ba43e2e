"""Boost's approximation networks (docs/method.md section 4.3): one MLP per extra view, V -> h -> V.

A network maps the code of an image's identity-view target to the shift of its view-k target
(Y^(k) = Y^(0) + A_k(code) in code space). It is kept as a plain dict of tensors (w1, b1, w2, b2) so
the same function serves joint distillation (the tensors are learned), post-hoc fitting and loading.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssdd.run.progress import bar

PARTS = ("w1", "b1", "w2", "b2")


def init_approx(dim: int, hidden: int, generator: torch.Generator, device: torch.device | str = "cpu"
                ) -> dict[str, torch.Tensor]:
    """nn.Linear's default init for the first layer; zeros for the second, so A_k starts at 'no shift'."""
    bound = 1.0 / math.sqrt(dim)
    w1 = (torch.rand(hidden, dim, generator=generator) * 2 - 1) * bound
    b1 = (torch.rand(hidden, generator=generator) * 2 - 1) * bound
    params = {"w1": w1, "b1": b1, "w2": torch.zeros(dim, hidden), "b2": torch.zeros(dim)}
    return {k: v.to(device) for k, v in params.items()}


def apply_approx(params: dict[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """(m, V) codes -> (m, V) predicted shifts."""
    return F.linear(F.relu(F.linear(codes, params["w1"], params["b1"])), params["w2"], params["b2"])


def approx_floats(dim: int, hidden: int) -> int:
    return dim * hidden + hidden + hidden * dim + dim


def fit_approx(codes: torch.Tensor, shifts: torch.Tensor, hidden: int, steps: int, lr: float, seed: int,
               desc: str = "approximation network") -> dict[str, torch.Tensor]:
    """Fit A on (codes -> shifts) by full-batch Adam on the MSE; returns detached parameters."""
    generator = torch.Generator().manual_seed(seed)
    params = {k: v.requires_grad_(True) for k, v in init_approx(codes.shape[1], hidden, generator,
                                                                codes.device).items()}
    codes, shifts = codes.detach().float(), shifts.detach().float()
    scale = shifts.pow(2).mean().clamp_min(1e-12)  # a scale-free loss: Adam's step size means the same everywhere
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    for _ in bar(range(steps), desc=desc, unit="step"):
        loss = F.mse_loss(apply_approx(params, codes), shifts) / scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in params.items()}


def relative_error(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """||predicted - target||^2 / ||target - mean(target)||^2: the fraction of the target's variance missed."""
    spread = (target - target.mean(0)).pow(2).sum().clamp_min(1e-12)
    return float((predicted - target).pow(2).sum() / spread)
