"""LARS (You et al., 2017) as used by Barlow Twins and solo-learn.

For each parameter p with gradient g (unless it is excluded, i.e. 1-D: biases and norm weights) and
both norms non-zero, the trust ratio t = eta * ||p|| / (||g|| + wd * ||p|| + eps) scales the decayed
gradient, g <- s * (g + wd * p), with s = t, or with `clip_lr` (solo-learn's CIFAR recipe, the default)
s = min(t / lr, 1), so that the step lr * s is min(t, lr): the adapted rate never exceeds the schedule's.
Then SGD with momentum: buf <- momentum * buf + g; p <- p - lr * buf. Excluded parameters, parameters
with a zero norm or gradient, and groups with lars=False get neither adaptation nor weight decay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class LARS(Optimizer):
    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, eps: float = 1e-8, exclude_1d: bool = True, clip_lr: bool = True) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError("LARS needs lr, momentum, weight_decay >= 0 and eta > 0")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "eps": eps,
                    "exclude_1d": exclude_1d, "lars": True, "clip_lr": clip_lr}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                adapt = group["lars"] and not (group["exclude_1d"] and p.ndim == 1)
                if adapt:
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    wd = group["weight_decay"]
                    trust = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
                    if group.get("clip_lr", False):
                        trust = torch.clamp(trust / group["lr"], max=1.0) if group["lr"] > 0 else torch.ones_like(trust)
                    usable = (p_norm > 0) & (g_norm > 0)
                    d_p = torch.where(usable, (d_p + wd * p) * trust, d_p)
                if group["momentum"] > 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                    d_p = state["momentum_buffer"]
                p.add_(d_p, alpha=-group["lr"])
        return loss
