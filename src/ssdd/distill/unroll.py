"""Unrolled SGD on a flat parameter vector, differentiable with respect to the data it trains on.

MKDT's trajectory matching (docs/method.md) trains a student for `syn_steps` SGD steps on the distilled
set and differentiates the end point with respect to the images, the targets and the learning rate. Here a
network is called functionally (`torch.func.functional_call`) on views into one flat parameter vector, so
each step is `theta <- theta - lr * grad MSE(f(x; theta), y)`, with no Python loop over parameters beyond
splitting the vector into views.

Two ways to differentiate through the steps:

- `recompute=True` (default): each step is one autograd node that keeps only its inputs (the parameter
  vector, the batch, its targets, the lr) and recomputes its forward and backward pass when the outer
  gradient flows back. Memory: `syn_steps` parameter vectors (4 P bytes each, P = number of parameters)
  plus the activations of a single step, whatever `syn_steps` is; compute: about one extra forward and
  backward pass per step.
- `recompute=False`: the plain unrolled graph (`create_graph=True` at every step), as in the MTT code. It
  keeps every step's activations and second-order graph, so memory grows with `syn_steps` times a step's
  activations; it skips the recomputation.

Both give the same gradients (tests/distill/test_unroll.py checks them against a hand-unrolled loop).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


class FlatModel:
    """A module whose parameters live in one flat vector: `model(theta, x)` = module(x) with those weights.

    The module must not update buffers in training mode (BatchNorm would): use instance or no norm."""

    def __init__(self, module: nn.Module) -> None:
        if any(b.is_floating_point() for b in module.buffers()):
            raise ValueError("unrolled training needs a network without running statistics (BatchNorm); "
                             "use one with instance norm, e.g. the convnet_mtt model")
        self.module = module
        named = list(module.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.size = sum(self.numels)

    def flatten(self, tensors: Iterator[torch.Tensor] | list[torch.Tensor] | None = None) -> torch.Tensor:
        """The parameters (or tensors of the same shapes, in order) as one vector."""
        items = list(self.module.parameters() if tensors is None else tensors)
        return torch.cat([t.detach().reshape(-1) for t in items])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of theta shaped as the module's parameters, by name."""
        pieces = torch.split(theta, self.numels)
        return {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes, strict=True)}

    def layout(self) -> list[dict[str, object]]:
        """Name and shape of every parameter, in vector order (stored beside trajectories to check them)."""
        return [{"name": n, "shape": list(s)} for n, s in zip(self.names, self.shapes, strict=True)]

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.unflatten(theta), (x,))


def inner_loss(model: FlatModel, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The student's training loss on one batch: mean squared error to the target representations."""
    return F.mse_loss(model(theta, x), y)


def sgd_step(model: FlatModel, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor,
             recompute: bool = True) -> torch.Tensor:
    """theta - lr * grad_theta MSE(f(x; theta), y), differentiable in theta, x, y and lr."""
    if recompute:
        return _RecomputedStep.apply(theta, x, y, lr, model)
    (grad,) = torch.autograd.grad(inner_loss(model, theta, x, y), theta, create_graph=True)
    return theta - lr * grad


class _RecomputedStep(torch.autograd.Function):
    """One SGD step that saves only its inputs and rebuilds its graph in the backward pass."""

    @staticmethod
    def forward(ctx, theta, x, y, lr, model):  # type: ignore[override]
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(inner_loss(model, leaf, x.detach(), y.detach()), leaf)
        ctx.model = model
        ctx.save_for_backward(theta, x, y, lr)
        return theta.detach() - lr.detach() * grad

    @staticmethod
    @torch.autograd.function.once_differentiable  # its gradient is exact; a gradient of it is not offered
    def backward(ctx, grad_out):  # type: ignore[override]
        theta, x, y, lr = ctx.saved_tensors
        needs = ctx.needs_input_grad[:4]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in (theta, x, y, lr)]
            (grad,) = torch.autograd.grad(inner_loss(ctx.model, leaves[0], leaves[1], leaves[2]), leaves[0],
                                          create_graph=True)
            out = leaves[0] - leaves[3] * grad
            wanted = [leaf for leaf, need in zip(leaves, needs, strict=True) if need]
            grads = iter(torch.autograd.grad(out, wanted, grad_out, allow_unused=True)) if wanted else iter(())
        return (*(next(grads) if need else None for need in needs), None)


def unrolled_sgd(model: FlatModel, theta: torch.Tensor, images: torch.Tensor, targets: torch.Tensor,
                 lr: torch.Tensor, batches: list[torch.Tensor], recompute: bool = True) -> torch.Tensor:
    """Train from theta with one SGD step per index batch in `batches`; the final parameter vector."""
    if not theta.requires_grad:  # the start is a constant: the steps still differentiate through it
        theta = theta.detach().requires_grad_(True)
    for index in batches:
        theta = sgd_step(model, theta, images[index], targets[index], lr, recompute)
    return theta


def matching_loss(student_end: torch.Tensor, expert_start: torch.Tensor, expert_end: torch.Tensor) -> torch.Tensor:
    """MTT's normalised parameter distance ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2."""
    return ((student_end - expert_end) ** 2).sum() / ((expert_start - expert_end) ** 2).sum()


def minibatches(count: int, batch_size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches for `steps` inner steps: each pass is a fresh permutation of `count` rows cut into
    batches of `batch_size` (0 = all rows), used from the last batch back, as the MTT code does."""
    size = count if batch_size <= 0 else min(batch_size, count)
    out: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    while len(out) < steps:
        if not pending:
            pending = list(torch.split(torch.randperm(count, generator=generator), size))
        out.append(pending.pop())
    return out
