"""What the training loops of an evaluation share to run without waiting on a GPU: the loss sums kept on the
device, the opt-in bf16 autocast (`precision`) and the trained networks' forward through torch.compile
(`compile`); index copies that do not block the host are ssdd.run.runtime.to_device.

On a GPU the host queues kernels ahead of the device; reading a tensor's value (`float(loss)`, `.item()`) or
copying a CPU tensor from pageable memory makes the host wait until everything queued has run, so a loop
that does either at every step leaves the GPU idle between steps. On the CPU both helpers below compute
exactly what the plain loops computed (tests/evaluation/test_fastpath.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from ssdd.config import ModelConfig
from ssdd.run.compiled import Compiled, compiled, own_code
from ssdd.run.runtime import forward_precision, precision_dtype

# how a training loop runs the network it trains: forward(network, x) (the head stays outside, eager)
Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The context of a trained network's forward pass under evaluate's `precision`: nothing at all for fp32
    (bit-identical to the loops before the setting existed), bfloat16 autocast for bf16 (its loss is computed
    in float32 outside it)."""
    return forward_precision(device, precision_dtype(precision, "precision"))


class EpochLosses:
    """Per-epoch sums of batch losses, kept on the device in float64 and read once, at the end.

    The sums are the ones the loops used to make of Python floats: float(loss) is the float32 loss widened
    to float64, times a whole-number weight, added in the same order, so the epoch means are bit-identical."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._sums: list[torch.Tensor] = []

    def new_epoch(self) -> None:
        self._sums.append(torch.zeros((), dtype=torch.float64, device=self._device))

    def add(self, loss: torch.Tensor, weight: int = 1) -> None:
        """Add `weight` x the batch's loss to the current epoch's sum (no read of the value)."""
        self._sums[-1].add_(loss.detach().double() * weight)

    def means(self, divisor: int) -> list[float]:
        """Every epoch's sum divided by `divisor` (pairs, or batches, per epoch): the one read of the losses."""
        return [total / divisor for total in torch.stack(self._sums).tolist()] if self._sums else []


def network_forward(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """network(x): the forward of every network an evaluation trains, unless `compile` hands the loops a compiled
    copy (NetworkForwards). The network is an argument, so one compiled graph serves every network of an
    architecture: each cell's fresh one, and the copy each target fine-tunes."""
    return network(x)


class NetworkForwards:
    """The training forward of each architecture of an evaluation (`models`), under its `compile` setting (auto = on
    on CUDA where torch.compile works; `on` where it is unavailable is a one-line error here, before any work).
    Each architecture compiles a copy of `network_forward` with a code object of its own
    (ssdd.run.compiled.own_code): its graphs (a batch size or two) are kept apart from the other architectures',
    and the process keeps them from cell to cell."""

    def __init__(self, setting: str, device: torch.device, models: list[ModelConfig]) -> None:
        self._by_arch: dict[tuple[Any, ...], Compiled] = {}
        for number, model in enumerate(models):
            fn = own_code(network_forward, f"forward_{number}_{model.name}")
            self._by_arch[_arch(model)] = compiled(fn, setting, device, f"the {model.name} being trained",
                                                   key="compile", who="ssdd evaluate")

    def of(self, model: ModelConfig) -> Compiled:
        """The forward that trains networks of `model`'s architecture (eager when `compile` is off)."""
        return self._by_arch[_arch(model)]

    def active(self, model: ModelConfig) -> bool:
        """Whether `model`'s networks train through torch.compile (False when off, or fallen back to eager)."""
        return self.of(model).compiled is not None


def _arch(model: ModelConfig) -> tuple[Any, ...]:
    return (model.name, model.width, model.depth, model.feature)
