"""The parts of one teacher training step, each a function a benchmark can time.

The fast path (`fast`, default auto = on on CUDA) computes what the plain path computes with no host
synchronisation per step: branch-free colour jitter (the same images bit for bit), LARS over all
parameters at once (the same rule; float rounding aside) and the step's loss and monitor hits kept on
the device (`StepLog`), read every `FAST_SYNC_EVERY` steps. `compile` (auto = on on CUDA) runs the
model's forward, and so its backward, through torch.compile, and on the fast path the views too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ssdd.augment import normalize, to_float, two_views
from ssdd.augment.pipelines import TwoViewConfig
from ssdd.run.compiled import Compiled, compiled

FAST_SYNC_EVERY = 100  # fast path: steps between reads of the device's loss log (finiteness, progress bar)
PLAIN_BAR_EVERY = 10  # plain path: steps between progress-bar updates (it reads the loss every step anyway)


def model_forward(model: nn.Module, setting: object, device: torch.device) -> Compiled:
    """The model's forward (and so its backward) as the `compile` setting asks."""
    return compiled(model, setting, device, "the model")


def views_maker(setting: object, device: torch.device, fast: bool) -> Compiled:
    """`make_views`, compiled as the `compile` setting asks on the fast path: its branch-free colour jitter has
    no host read that would split the graph (each random draw still does: the draws stay eager, so the views
    are those of the same numbers, to float rounding); the plain path's views stay eager."""
    return compiled(make_views, setting if fast else "off", device, "the augmentations")


def make_views(images: torch.Tensor, augment: TwoViewConfig, generator: torch.Generator, mean: torch.Tensor,
               std: torch.Tensor, channels_last: bool, branch_free: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented, normalised float views of a uint8 batch, in the model's memory format; `branch_free`:
    without reading a drawn number on the host (the same views bit for bit)."""
    view1, view2 = two_views(to_float(images), augment, generator, branch_free)
    view1, view2 = normalize(view1, mean, std), normalize(view2, mean, std)
    if channels_last:
        view1 = view1.contiguous(memory_format=torch.channels_last)
        view2 = view2.contiguous(memory_format=torch.channels_last)
    return view1, view2


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward of the step's total loss and one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class StepLog:
    """One epoch's Barlow Twins losses and monitor hits, step by step, kept on the device: recording reads
    nothing on the host; `check` and `totals` do (the plain path every step, the fast path every
    FAST_SYNC_EVERY steps and at the epoch's end). Totals add the losses in step order as Python floats,
    as the plain loop always did, so the logged loss is the same number whichever path ran."""

    def __init__(self, steps: int, device: torch.device) -> None:
        self.losses = torch.zeros(steps, dtype=torch.float32, device=device)
        self.hits = torch.zeros(steps, dtype=torch.int64, device=device)
        self.checked = 0  # steps whose losses were seen to be finite

    def record(self, step: int, ssl_loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.losses[step] = ssl_loss.detach()
        self.hits[step] = (logits.detach().argmax(1) == labels).sum()

    def check(self, upto: int, epoch: int) -> None:
        """FloatingPointError naming the first step before `upto` whose loss is NaN or inf."""
        if upto <= self.checked:
            return
        values = self.losses[self.checked:upto].tolist()
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(f"Barlow Twins loss became {value} at epoch {epoch + 1}, "
                                         f"step {self.checked + offset}")
        self.checked = upto

    def loss(self, step: int) -> float:
        return float(self.losses[step])

    def totals(self, upto: int) -> tuple[float, int]:
        """(sum of the first `upto` losses, added in step order; their monitor hits)."""
        loss_sum = 0.0
        for value in self.losses[:upto].tolist():
            loss_sum += value
        return loss_sum, int(self.hits[:upto].sum())
