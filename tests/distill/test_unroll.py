"""ssdd.distill.unroll: unrolled student SGD against a hand-written reference, its memory, FlatModel, minibatches."""

from __future__ import annotations

import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssdd.distill.unroll import FlatModel, matching_loss, minibatches, unrolled_sgd


class TinyNet(nn.Module):
    """conv3x3 (3 -> 2 channels) -> ReLU -> flatten -> linear to d: the structure `hand_forward` writes out."""

    def __init__(self, side: int, d: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, kernel_size=3, padding=1)
        self.head = nn.Linear(2 * side * side, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def hand_forward(w: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    conv_w, conv_b, head_w, head_b = w
    return F.linear(F.relu(F.conv2d(x, conv_w, conv_b, padding=1)).flatten(1), head_w, head_b)


def hand_unrolled_loss(w0: list[torch.Tensor], images: torch.Tensor, targets: torch.Tensor, lr: torch.Tensor,
                       batches: list[torch.Tensor], expert_end: list[torch.Tensor]) -> torch.Tensor:
    """SGD steps written out on explicit weight tensors, then MTT's normalised distance to expert_end."""
    w = list(w0)
    for index in batches:
        loss = ((hand_forward(w, images[index]) - targets[index]) ** 2).mean()
        grads = torch.autograd.grad(loss, w, create_graph=True)
        w = [wi - lr * gi for wi, gi in zip(w, grads, strict=True)]
    num = sum(((wi - ei) ** 2).sum() for wi, ei in zip(w, expert_end, strict=True))
    den = sum(((si.detach() - ei) ** 2).sum() for si, ei in zip(w0, expert_end, strict=True))  # a constant
    return num / den


def close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> bool:
    return float((actual - expected).abs().max()) <= rel * float(expected.abs().max())


@pytest.mark.parametrize("recompute", [True, False])
def test_unrolled_sgd_matches_a_hand_unrolled_reference(recompute, one_thread):
    torch.manual_seed(0)
    side, d, n = 6, 3, 5
    module = TinyNet(side, d).double()
    flat = FlatModel(module)
    assert flat.size == 2 * 27 + 2 + d * 2 * side * side + d
    theta0 = flat.flatten()
    expert_end_flat = theta0 + 0.3 * torch.randn_like(theta0)
    images = torch.randn(n, 3, side, side, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    batches = minibatches(n, 2, 5, torch.Generator().manual_seed(3))  # 3 batches a pass (2, 2, 1): wraps round
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(n))

    # the reference: weights copied out of the module as separate tensors, the end point split by hand
    w0 = [p.detach().clone().requires_grad_(True) for p in (module.conv.weight, module.conv.bias,
                                                           module.head.weight, module.head.bias)]
    sizes = [t.numel() for t in w0]
    expert_end = [piece.view(t.shape) for piece, t in zip(expert_end_flat.split(sizes), w0, strict=True)]
    ref_loss = hand_unrolled_loss(w0, images, targets, lr, batches, expert_end)
    ref = torch.autograd.grad(ref_loss, [images, targets, lr, *w0])
    ref_theta = torch.cat([g.reshape(-1) for g in ref[3:]])

    start = theta0.clone().requires_grad_(True)
    end = unrolled_sgd(flat, start, images, targets, lr, batches, recompute=recompute)
    loss = matching_loss(end, theta0, expert_end_flat)
    got = torch.autograd.grad(loss, [images, targets, lr, start])

    assert abs(loss.item() - ref_loss.item()) <= 1e-10 * abs(ref_loss.item())
    for name, actual, expected in (("images", got[0], ref[0]), ("targets", got[1], ref[1]), ("lr", got[2], ref[2]),
                                   ("theta", got[3], ref_theta)):
        assert actual.shape == expected.shape, name
        assert float(expected.abs().max()) > 0, name  # a real check, not zero against zero
        assert close(actual, expected, 1e-10), name
    # a start that is a constant (MKDT's expert snapshot) gives the same gradients for the learned tensors
    end = unrolled_sgd(flat, theta0, images, targets, lr, batches, recompute=recompute)
    again = torch.autograd.grad(matching_loss(end, theta0, expert_end_flat), [images, targets, lr])
    for actual, expected in zip(again, ref[:3], strict=True):
        assert close(actual, expected, 1e-10)


class _Box:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def live_saved_bytes(fn) -> tuple[int, torch.Tensor]:
    """Bytes of the tensors that autograd still holds for backward after fn() (alive, counted when packed)."""
    live: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> _Box:
        box = _Box(tensor)
        live[id(box)] = tensor.numel() * tensor.element_size()
        weakref.finalize(box, live.pop, id(box), None)
        return box

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.tensor):
        out = fn()
    return sum(live.values()), out


def test_recompute_keeps_saved_memory_bounded_in_syn_steps(one_thread):
    from ssdd.config import ModelConfig
    from ssdd.distill.pool import PoolMember
    from ssdd.models import build_model

    torch.manual_seed(0)
    module = PoolMember(build_model(ModelConfig(name="convnet_mtt", width=4, depth=2), 16), 8)
    flat = FlatModel(module)
    theta0 = flat.flatten()
    expert_end = theta0 + 0.01 * torch.randn_like(theta0)
    images = torch.randn(8, 3, 16, 16, requires_grad=True)
    targets = torch.randn(8, 8, requires_grad=True)
    lr = torch.tensor(0.1, requires_grad=True)
    batch = 4

    def saved(steps: int, recompute: bool) -> int:
        batches = minibatches(8, batch, steps, torch.Generator().manual_seed(0))
        size, loss = live_saved_bytes(
            lambda: matching_loss(unrolled_sgd(flat, theta0, images, targets, lr, batches, recompute), theta0,
                                  expert_end))
        loss.backward()  # the packed tensors are usable: backward runs through them
        assert images.grad is not None and lr.grad is not None
        images.grad = targets.grad = lr.grad = None
        return size

    per_step_recompute = (saved(16, True) - saved(4, True)) / 12
    per_step_plain = (saved(16, False) - saved(4, False)) / 12
    # one step with recompute keeps its inputs: the parameter vector, the batch, its targets, lr, the indices
    one_step_inputs = 4 * (flat.size + batch * 3 * 16 * 16 + batch * 8 + 1) + 8 * batch
    assert 0.8 * one_step_inputs <= per_step_recompute <= 1.25 * one_step_inputs
    assert per_step_plain > 4 * per_step_recompute  # the plain unroll keeps every step's activations and graph


def test_flat_model_refuses_batchnorm_and_round_trips():
    with pytest.raises(ValueError, match="BatchNorm"):
        FlatModel(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(4, 4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    flat = FlatModel(module)
    theta = flat.flatten()
    assert theta.shape == (sum(p.numel() for p in module.parameters()),) == (flat.size,)
    views = flat.unflatten(theta)
    assert list(views) == [name for name, _ in module.named_parameters()]
    for name, param in module.named_parameters():
        assert torch.equal(views[name], param.detach())
    assert torch.equal(flat.flatten(views.values()), theta)
    assert [entry["shape"] for entry in flat.layout()] == [list(p.shape) for p in module.parameters()]
    other = torch.randn(flat.size)
    assert torch.equal(flat.flatten(flat.unflatten(other).values()), other)
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(flat(theta, x), module(x))
    with torch.no_grad():  # the views share the vector's storage: calling on a vector uses exactly it
        for param, piece in zip(module.parameters(), flat.unflatten(other).values(), strict=True):
            param.copy_(piece)
    assert torch.allclose(flat(other, x), module(x))


def test_minibatches_are_permutation_passes():
    batches = minibatches(10, 3, 8, torch.Generator().manual_seed(0))
    assert len(batches) == 8
    for first in (0, 4):  # a pass is 4 batches (3, 3, 3, 1 rows), each a permutation covering every row once
        rows = torch.cat(batches[first:first + 4])
        assert sorted(rows.tolist()) == list(range(10))
    assert sorted(len(b) for b in batches[:4]) == [1, 3, 3, 3]
    assert not torch.equal(torch.cat(batches[:4]), torch.cat(batches[4:]))  # a fresh permutation each pass
    again = minibatches(10, 3, 8, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    for size in (0, 10, 25):  # 0 (or more than there are) = every row in every step
        whole = minibatches(10, size, 3, torch.Generator().manual_seed(1))
        assert len(whole) == 3 and all(sorted(b.tolist()) == list(range(10)) for b in whole)
