"""Approximation networks: a functional MLP V -> h -> V that can reproduce its training pairs."""

import pytest
import torch

from ssdd.distill.approx import apply_approx, approx_floats, fit_approx, init_approx, relative_error

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: thread hand-off dominates on a busy machine


def test_fresh_network_predicts_no_shift_and_counts_its_floats():
    params = init_approx(6, 4, torch.Generator().manual_seed(0))
    assert torch.equal(apply_approx(params, torch.randn(5, 6)), torch.zeros(5, 6))
    assert sum(p.numel() for p in params.values()) == approx_floats(6, 4) == 6 * 4 + 4 + 4 * 6 + 6


def test_fit_reproduces_its_training_pairs():
    gen = torch.Generator().manual_seed(0)
    truth = {k: v * 3 for k, v in init_approx(5, 4, gen).items()}
    truth["w2"] = torch.randn(5, 4, generator=gen)
    codes = torch.randn(40, 5, generator=gen) * torch.linspace(4, 0.5, 5)  # PCA-like spread
    shifts = apply_approx(truth, codes)
    fitted = fit_approx(codes, shifts, hidden=16, steps=3000, lr=1e-2, seed=0)
    assert relative_error(apply_approx(fitted, codes), shifts) < 1e-2
    assert relative_error(torch.zeros_like(shifts), shifts) > 0.5  # not trivially small


def test_relative_error_is_scale_free():
    target = torch.randn(20, 3)
    noisy = target + 0.1 * torch.randn(20, 3)
    assert abs(relative_error(noisy * 7, target * 7) - relative_error(noisy, target)) < 1e-5
    assert relative_error(target, target) == 0
