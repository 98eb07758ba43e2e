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


def _teacher_like(seed: int) -> tuple[torch.nn.Module, list[dict]]:
    """Backbone + projector + monitor, grouped as the teacher groups them; one weight starts at zero."""
    torch.manual_seed(seed)
    net = torch.nn.ModuleDict({
        "conv": torch.nn.Conv2d(3, 4, 3), "bn": torch.nn.BatchNorm2d(4), "proj": torch.nn.Linear(4, 6),
        "last": torch.nn.Linear(6, 5, bias=True), "monitor": torch.nn.Linear(4, 3)})
    with torch.no_grad():
        net["last"].weight.zero_()  # a zero norm: no trust ratio, no weight decay
    ssl = [p for name, p in net.named_parameters() if not name.startswith("monitor")]
    return net, [{"params": ssl, "base_lr": 0.3},
                 {"params": list(net["monitor"].parameters()), "lars": False, "weight_decay": 0.0}]


def _run_lars(foreach: bool, momentum: float, clip_lr: bool, steps: int = 4) -> tuple[torch.nn.Module, LARS]:
    net, groups = _teacher_like(0)
    opt = LARS(groups, lr=0.3, momentum=momentum, weight_decay=1e-4, eta=0.02, clip_lr=clip_lr, foreach=foreach)
    grads = torch.Generator().manual_seed(1)
    for step in range(steps):
        lr = 0.0 if step == 1 else 0.3 / (step + 1)  # a step at lr 0 (clip_lr's special case), then a decay
        for group in opt.param_groups:
            group["lr"] = lr
        for name, p in net.named_parameters():
            p.grad = torch.randn(p.shape, generator=grads)
            if name == "proj.weight" and step == 2:
                p.grad.zero_()  # a zero gradient norm
        if step == 3:
            net["bn"].bias.grad = None  # a parameter without a gradient is left alone
        opt.step()
    return net, opt


@pytest.mark.parametrize(("momentum", "clip_lr"), [(0.9, True), (0.9, False), (0.0, True)])
def test_foreach_lars_computes_what_the_per_tensor_loop_computes(momentum, clip_lr):
    plain_net, plain = _run_lars(False, momentum, clip_lr)
    fast_net, fast = _run_lars(True, momentum, clip_lr)
    moved = 0
    for (name, a), b in zip(plain_net.named_parameters(), fast_net.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7), name
        moved += not torch.equal(a, _teacher_like(0)[0].get_parameter(name))
        if momentum > 0:
            assert torch.allclose(plain.state[a]["momentum_buffer"], fast.state[b]["momentum_buffer"],
                                  rtol=1e-6, atol=1e-7), name
        else:
            assert not plain.state[a] and not fast.state[b]
    assert moved == len(list(plain_net.parameters()))  # every parameter took a step (the test can fail)


def test_foreach_and_loop_state_dicts_load_into_each_other():
    _, fast = _run_lars(True, 0.9, True, steps=2)
    _, groups = _teacher_like(0)
    plain = LARS(groups, lr=0.3, momentum=0.9, weight_decay=1e-4, foreach=False)
    plain.load_state_dict(fast.state_dict())
    assert not plain.foreach  # the state carries no choice of path
    saved, loaded = fast.state_dict(), plain.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for key, state in saved["state"].items():
        assert torch.equal(state["momentum_buffer"], loaded["state"][key]["momentum_buffer"])
    again = LARS(_teacher_like(0)[1], lr=0.3, momentum=0.9, weight_decay=1e-4, foreach=True)
    again.load_state_dict(plain.state_dict())
    assert again.foreach and again.state_dict()["param_groups"] == saved["param_groups"]
