import math

import pytest
import torch

from ssdd.teacher.lars import LARS
from ssdd.teacher.schedule import warmup_cosine


def test_lars_step_matches_hand_computation():
    weight = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    weight.grad = torch.tensor([[0.6, 0.8]])  # ||g|| = 1
    bias.grad = torch.tensor([0.5])
    lr, wd, eta, mom = 0.1, 0.01, 0.02, 0.9
    opt = LARS([weight, bias], lr=lr, weight_decay=wd, eta=eta, momentum=mom, eps=0.0, clip_lr=False)
    opt.step()
    trust = eta * 5.0 / (1.0 + wd * 5.0)  # eta ||w|| / (||g|| + wd ||w||)
    update = [trust * (0.6 + wd * 3.0), trust * (0.8 + wd * 4.0)]
    expected_w = torch.tensor([[3.0 - lr * update[0], 4.0 - lr * update[1]]])
    assert torch.allclose(weight.detach(), expected_w, atol=1e-7)
    # the 1-D bias is excluded: plain SGD step, no weight decay, no trust ratio
    assert torch.allclose(bias.detach(), torch.tensor([1.0 - lr * 0.5]), atol=1e-7)

    # second step: momentum buffer = mom * first update + new update
    weight.grad = torch.tensor([[0.6, 0.8]])
    bias.grad = torch.tensor([0.5])
    w_before = weight.detach().clone()
    norm = w_before.norm().item()
    trust2 = eta * norm / (1.0 + wd * norm)
    new = trust2 * (torch.tensor([[0.6, 0.8]]) + wd * w_before)
    buf = mom * torch.tensor([update]) + new
    opt.step()
    assert torch.allclose(weight.detach(), w_before - lr * buf, atol=1e-6)
    assert torch.allclose(bias.detach(), torch.tensor([1.0 - lr * 0.5 - lr * (mom * 0.5 + 0.5)]), atol=1e-6)


@pytest.mark.parametrize("lr", [0.05, 0.2])  # trust / lr above 1 (clipped) and below 1
def test_clip_lr_caps_the_adapted_rate_at_the_scheduled_one(lr):
    weight = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    weight.grad = torch.tensor([[0.6, 0.8]])  # ||g|| = 1
    wd, eta = 0.01, 0.02
    LARS([weight], lr=lr, weight_decay=wd, eta=eta, momentum=0.0, eps=0.0, clip_lr=True).step()
    trust = eta * 5.0 / (1.0 + wd * 5.0)  # 0.0952
    step = min(trust, lr)  # solo-learn: lr * min(trust / lr, 1)
    expected = torch.tensor([[3.0, 4.0]]) - step * (torch.tensor([[0.6, 0.8]]) + wd * torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(weight.detach(), expected, atol=1e-7)


def test_clip_lr_at_zero_lr_does_not_move():
    weight = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    weight.grad = torch.tensor([[0.6, 0.8]])
    LARS([weight], lr=0.0, weight_decay=0.01, momentum=0.0, clip_lr=True).step()
    assert torch.equal(weight.detach(), torch.tensor([[3.0, 4.0]]))


def test_group_without_lars_is_plain_sgd():
    p = torch.nn.Parameter(torch.ones(2, 2))
    p.grad = torch.full((2, 2), 0.5)
    opt = LARS([{"params": [p], "lars": False, "weight_decay": 0.0}], lr=0.1, weight_decay=0.1, momentum=0.0)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((2, 2), 0.95))


def test_zero_weight_skips_trust_ratio():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    p.grad = torch.ones(2, 2)
    LARS([p], lr=0.1, momentum=0.0, weight_decay=0.5).step()
    assert torch.allclose(p.detach(), torch.full((2, 2), -0.1))


def test_invalid_hyperparameters():
    with pytest.raises(ValueError):
        LARS([torch.nn.Parameter(torch.ones(1))], lr=-1.0)


def test_warmup_cosine_shape():
    assert warmup_cosine(0, 100, 10, 1.0) == 0.0
    assert warmup_cosine(5, 100, 10, 1.0) == pytest.approx(0.5)
    assert warmup_cosine(0, 100, 10, 1.0, warmup_start_lr=0.1) == pytest.approx(0.1)
    assert warmup_cosine(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 100, 10, 1.0, min_lr=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        warmup_cosine(0, 0, 0, 1.0)
