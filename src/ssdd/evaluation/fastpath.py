"""What the training loops of an evaluation share to run without waiting on a GPU: the loss sums kept on the
device and the opt-in bf16 autocast (`precision`); index copies that do not block the host are
ssdd.run.runtime.to_device.

On a GPU the host queues kernels ahead of the device; reading a tensor's value (`float(loss)`, `.item()`) or
copying a CPU tensor from pageable memory makes the host wait until everything queued has run, so a loop
that does either at every step leaves the GPU idle between steps. On the CPU both helpers below compute
exactly what the plain loops computed (tests/evaluation/test_fastpath.py).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from ssdd.run.runtime import forward_precision, precision_dtype


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
