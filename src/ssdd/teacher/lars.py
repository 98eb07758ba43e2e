"""LARS (You et al., 2017) as used by Barlow Twins and solo-learn.

For each parameter p with gradient g (unless it is excluded, i.e. 1-D: biases and norm weights) and
both norms non-zero, the trust ratio t = eta * ||p|| / (||g|| + wd * ||p|| + eps) scales the decayed
gradient, g <- s * (g + wd * p), with s = t, or with `clip_lr` (solo-learn's CIFAR recipe, the default)
s = min(t / lr, 1), so that the step lr * s is min(t, lr): the adapted rate never exceeds the schedule's.
Then SGD with momentum: buf <- momentum * buf + g; p <- p - lr * buf. Excluded parameters, parameters
with a zero norm or gradient, and groups with lars=False get neither adaptation nor weight decay.

`foreach=True` computes the same rule over all parameters of a group at once (torch._foreach_* ops: a few
kernels per group instead of about fifteen per tensor, which dominate a GPU step of a small network); the
per-tensor loop (`foreach=False`, the default) is the plain reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class LARS(Optimizer):
    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, eps: float = 1e-8, exclude_1d: bool = True, clip_lr: bool = True,
                 foreach: bool = False) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError("LARS needs lr, momentum, weight_decay >= 0 and eta > 0")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "eps": eps,
                    "exclude_1d": exclude_1d, "lars": True, "clip_lr": clip_lr}
        super().__init__(params, defaults)
        # an attribute, not a group default: the state_dict stays the same for both paths, and loading one
        # does not switch the path
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if self.foreach:
                self._group_step_foreach(group)
            else:
                self._group_step(group)
        return loss

    def _group_step(self, group: dict[str, Any]) -> None:
        """The plain rule, one tensor at a time."""
        for p in group["params"]:
            if p.grad is None:
                continue
            d_p = p.grad
            if _adapted(group, p):
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

    def _group_step_foreach(self, group: dict[str, Any]) -> None:
        """The same rule over the group's tensors at once."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        adapted = [p for p in params if _adapted(group, p)]
        updates = dict(zip(map(id, adapted), _adapted_updates(group, adapted), strict=True)) if adapted else {}
        d_ps = [updates.get(id(p), p.grad) for p in params]
        if group["momentum"] > 0:
            d_ps = self._momentum_foreach(params, d_ps, group["momentum"])
        torch._foreach_add_(params, d_ps, alpha=-group["lr"])

    def _momentum_foreach(self, params: list[torch.Tensor], d_ps: list[torch.Tensor],
                          momentum: float) -> list[torch.Tensor]:
        """buf <- momentum * buf + d_p (the first step: buf = a copy of d_p); returns the buffers."""
        old = [i for i, p in enumerate(params) if "momentum_buffer" in self.state[p]]
        if old:
            buffers = [self.state[params[i]]["momentum_buffer"] for i in old]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, [d_ps[i] for i in old])
        for p, d_p in zip(params, d_ps, strict=True):
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = d_p.detach().clone()
        return [self.state[p]["momentum_buffer"] for p in params]


def _adapted(group: dict[str, Any], p: torch.Tensor) -> bool:
    """Whether the trust ratio and weight decay apply to p (its group uses LARS and it is not an excluded 1-D)."""
    return bool(group["lars"]) and not (group["exclude_1d"] and p.ndim == 1)


def _adapted_updates(group: dict[str, Any], params: list[torch.Tensor]) -> list[torch.Tensor]:
    """(g + wd * p) * s for each p with both norms non-zero, else g unchanged: per-tensor wd and s, as 0-dim
    tensors on the device (wd becomes 0 and s 1 where a norm is zero), so no value is read on the host."""
    grads = [p.grad for p in params]
    p_norm = torch.stack(torch._foreach_norm(params))
    g_norm = torch.stack(torch._foreach_norm(grads))
    wd, lr = group["weight_decay"], group["lr"]
    trust = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
    if group.get("clip_lr", False):
        trust = torch.clamp(trust / lr, max=1.0) if lr > 0 else torch.ones_like(trust)
    usable = (p_norm > 0) & (g_norm > 0)
    decay = torch.where(usable, torch.full_like(trust, wd), torch.zeros_like(trust))
    scale = torch.where(usable, trust, torch.ones_like(trust))
    decayed = torch._foreach_mul(params, list(decay.unbind()))  # wd * p, or 0 * p
    torch._foreach_add_(decayed, grads)  # g + wd * p
    torch._foreach_mul_(decayed, list(scale.unbind()))
    return list(decayed)
