"""The evaluation's GPU habits on the CPU (ssdd.evaluation.fastpath): losses summed on the device give the
plain loops' numbers bit for bit, and the opt-in bf16 autocast trains close to float32 without equalling it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssdd.augment import crop_flip, normalize, to_float
from ssdd.config import ModelConfig
from ssdd.data import ImageDataset
from ssdd.evaluation.config import FinetuneConfig, FullDataConfig, PretrainConfig
from ssdd.evaluation.fastpath import EpochLosses, autocast
from ssdd.evaluation.finetune import finetune
from ssdd.evaluation.pretrain import epoch_batches, pretrain_full_data, pretrain_on_pairs
from ssdd.models import build_model

MEAN, STD = torch.full((3,), 0.5), torch.full((3,), 0.25)


def network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(name="convnet", width=4, depth=2), 16)


def pairs(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 16, 16, generator=gen), torch.randn(n, 6, generator=gen)


def test_device_sums_equal_python_float_sums_bit_for_bit():
    losses = torch.rand(50, generator=torch.Generator().manual_seed(0)) * 10  # float32, like a loss
    weights = [int(w) for w in torch.randint(1, 300, (50,), generator=torch.Generator().manual_seed(1))]
    sums = EpochLosses(torch.device("cpu"))
    plain = []
    for epoch in range(5):
        sums.new_epoch()
        total = 0.0
        for loss, weight in zip(losses[epoch * 10 : epoch * 10 + 10], weights[epoch * 10 : epoch * 10 + 10],
                                strict=True):
            sums.add(loss, weight)
            total += float(loss) * weight
        plain.append(total / 7)
    assert sums.means(7) == plain  # exact: the same float64 additions in the same order
    assert EpochLosses(torch.device("cpu")).means(3) == []


def _plain_pretrain_on_pairs(backbone, images, targets, cfg, generator):
    """pretrain_on_pairs as it was before the device sums: a Python float read at every step."""
    head = nn.Linear(backbone.feature_dim, targets.shape[1])
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    inputs, losses = normalize(images, MEAN, STD), []
    for batches in epoch_batches(images.shape[0], cfg, generator, images.device):
        total = 0.0
        for idx in batches:
            loss = F.mse_loss(head(backbone(inputs[idx])), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.numel()
        losses.append(total / images.shape[0])
    return losses


def _plain_full_data(backbone, images_u8, teacher, cfg, generator):
    """pretrain_full_data as it was before the device sums."""
    head = nn.Linear(backbone.feature_dim, 6)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    batches = images_u8.shape[0] // cfg.batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * batches)
    aug_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    losses = []
    for _ in range(cfg.epochs):
        order, total = torch.randperm(images_u8.shape[0], generator=generator), 0.0
        for step in range(batches):
            x = crop_flip(to_float(images_u8[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]),
                          cfg.crop_padding, aug_gen)
            with torch.no_grad():
                y = teacher(x)
            loss = F.mse_loss(head(backbone(normalize(x, MEAN, STD))), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        losses.append(total / batches)
    return losses


def test_pretraining_logs_the_losses_of_the_plain_loops():
    images, targets = pairs()
    cfg = PretrainConfig(epochs=3, batch_size=8, lr=0.05)
    fast = pretrain_on_pairs(network(), images, targets, MEAN, STD, cfg, torch.Generator().manual_seed(1))
    assert fast == _plain_pretrain_on_pairs(network(), images, targets, cfg, torch.Generator().manual_seed(1))
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 6))
    images_u8 = (images * 255).to(torch.uint8)
    full = FullDataConfig(epochs=2, batch_size=8)
    fast = pretrain_full_data(network(), images_u8, teacher, MEAN, STD, full, torch.Generator().manual_seed(1))
    assert fast == _plain_full_data(network(), images_u8, teacher, full, torch.Generator().manual_seed(1))
    assert len(fast) == 2


def _conv_output_dtypes(model: nn.Module) -> set[torch.dtype]:
    seen: set[torch.dtype] = set()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, args, out: seen.add(out.dtype))
    return seen


def test_bf16_pretraining_runs_in_bfloat16_and_stays_close_to_float32():
    images, targets = pairs()
    cfg = PretrainConfig(epochs=5, batch_size=8, lr=0.05)
    runs = {}
    for precision, order in (("fp32", 1), ("bf16", 1), ("fp32", 2)):
        backbone = network()
        dtypes = _conv_output_dtypes(backbone)
        losses = pretrain_on_pairs(backbone, images, targets, MEAN, STD, cfg, torch.Generator().manual_seed(order),
                                   precision=precision)
        runs[precision, order] = (losses, torch.cat([p.detach().flatten() for p in backbone.parameters()]), dtypes)
    assert runs["fp32", 1][2] == {torch.float32} and runs["bf16", 1][2] == {torch.bfloat16}
    (loss32, w32, _), (loss16, w16, _), (_, other, _) = runs["fp32", 1], runs["bf16", 1], runs["fp32", 2]
    assert loss16 != loss32  # the autocast acted
    # bfloat16 keeps 8 bits of mantissa (relative rounding 0.4 %): after 15 steps the losses and weights
    # agree closely, the weights several times closer than the same training over another order of the batches
    assert torch.allclose(torch.tensor(loss16), torch.tensor(loss32), rtol=0.03)
    drift = float((w16 - w32).norm() / w32.norm())
    assert drift < float((other - w32).norm() / w32.norm()) / 3, drift


def test_bf16_finetuning_runs_in_bfloat16_and_scores_close_to_float32():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 4
    colours = torch.rand(4, 3, 1, 1, generator=gen)
    images = ((colours[labels] + 1.5 * torch.rand(64, 3, 16, 16, generator=gen)).clamp(0, 1) * 255).to(torch.uint8)
    data = ImageDataset(images, labels, tuple(f"c{i}" for i in range(4)), "train", "t")
    cfg = FinetuneConfig(iterations=30, small_iterations=30, batch_size=16, lr=0.05)
    scores = {}
    for precision in ("fp32", "bf16"):
        backbone = network()
        dtypes = _conv_output_dtypes(backbone)  # the fine-tuned copy keeps the hooks
        scores[precision] = finetune(backbone, data, data, MEAN, STD, cfg, torch.Generator().manual_seed(2),
                                     precision=precision)["top1"]
        assert torch.bfloat16 in dtypes if precision == "bf16" else dtypes == {torch.float32}
    # noisy enough that neither is at 100 %: 64 images, a few predictions flipped at most
    assert max(scores.values()) < 100.0 and abs(scores["bf16"] - scores["fp32"]) <= 10.0, scores


def test_fp32_is_no_autocast_at_all():
    with autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu")


def _needs_compile() -> None:
    import pytest

    from ssdd.run.compiled import compile_unavailable

    reason = compile_unavailable(torch.device("cpu"))
    if reason:
        pytest.skip(reason)


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().float().flatten() for t in model.state_dict().values()])


def test_compiled_training_forwards_train_what_eager_ones_do_with_one_set_of_graphs():
    """compile=on (NetworkForwards; off by default) on the CPU: pre-training on pairs, on full data and by the
    label recipe, and fine-tuning, each give the eager losses, weights (BatchNorm statistics included) and score
    to float rounding; a second fresh network of the architecture (the next cell) builds no graph."""
    from torch._dynamo.utils import counters

    from ssdd.evaluation.fastpath import NetworkForwards

    _needs_compile()
    torch._dynamo.reset()
    counters.clear()
    arch = ModelConfig(name="convnet", width=4, depth=2)
    forwards = NetworkForwards("on", torch.device("cpu"), [arch])
    eager = NetworkForwards("off", torch.device("cpu"), [arch])
    assert forwards.active(arch) and not eager.active(arch)
    images, targets = pairs()
    cfg = PretrainConfig(epochs=3, batch_size=8, lr=0.05)  # batches of 8 and a last one of 4
    runs = {}
    for name, via in (("eager", eager), ("compiled", forwards)):
        backbone = network()
        losses = pretrain_on_pairs(backbone, images, targets, MEAN, STD, cfg, torch.Generator().manual_seed(1),
                                   forward=via.of(arch))
        runs[name] = losses, _weights(backbone)
    assert torch.allclose(torch.tensor(runs["compiled"][0]), torch.tensor(runs["eager"][0]), rtol=1e-4)
    assert torch.allclose(runs["compiled"][1], runs["eager"][1], rtol=1e-4, atol=1e-5)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    again = pretrain_on_pairs(network(), images, targets, MEAN, STD, cfg, torch.Generator().manual_seed(1),
                              forward=forwards.of(arch))
    assert counters["stats"]["unique_graphs"] == graphs  # the next cell's fresh network: the same graphs
    assert torch.allclose(torch.tensor(again), torch.tensor(runs["compiled"][0]), rtol=1e-6)

    for name, via in (("eager", eager), ("compiled", forwards)):
        runs[name] = _other_loops(via.of(arch))
    for one, other in zip(runs["compiled"], runs["eager"], strict=True):
        if isinstance(one, dict):
            assert one == other  # 20 images: the same predictions
        else:
            assert torch.allclose(torch.as_tensor(one), torch.as_tensor(other), rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


def _other_loops(forward, calls: list[str] | None = None) -> tuple:
    """Pre-training on full data and by the label recipe, then fine-tuning, each taking `forward`; what they
    give. `calls` gets the name of the loop of every call of `forward`."""
    from ssdd.evaluation.supervised import pretrain_supervised

    def through(loop: str):
        return lambda module, x: (calls.append(loop) if calls is not None else None) or forward(module, x)

    images, _ = pairs()
    torch.manual_seed(5)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 6))
    labels = torch.arange(20) % 4
    gen = torch.Generator().manual_seed(0)
    colours = torch.rand(4, 3, 1, 1, generator=gen)
    data_u8 = ((colours[labels] + 1.5 * torch.rand(20, 3, 16, 16, generator=gen)).clamp(0, 1) * 255).to(torch.uint8)
    data = ImageDataset(data_u8, labels, tuple(f"c{i}" for i in range(4)), "train", "t")
    backbone, labelled = network(), network()
    full_losses = pretrain_full_data(backbone, (images * 255).to(torch.uint8), teacher, MEAN, STD,
                                     FullDataConfig(epochs=2, batch_size=8), torch.Generator().manual_seed(1),
                                     forward=through("full"))
    label_losses = pretrain_supervised(labelled, images, labels, MEAN, STD, PretrainConfig(epochs=2, batch_size=8),
                                       torch.Generator().manual_seed(1), num_classes=4, forward=through("labels"))
    tune = FinetuneConfig(iterations=12, small_iterations=12, batch_size=8, lr=0.05)
    score = finetune(backbone, data, data, MEAN, STD, tune, torch.Generator().manual_seed(2),
                     forward=through("finetune"))
    return full_losses, label_losses, _weights(backbone), _weights(labelled), score


def test_every_training_loop_runs_its_network_through_the_forward_it_is_given():
    """What makes compile=on reach every training step (no compiler needed): each step of pre-training on pairs,
    on full data and by the label recipe, and of fine-tuning, runs the network through `forward`, and the eager
    `network_forward` trains exactly what calling the network does."""
    from ssdd.evaluation.fastpath import network_forward

    calls: list[str] = []
    images, targets = pairs()
    cfg = PretrainConfig(epochs=3, batch_size=8, lr=0.05)
    losses = pretrain_on_pairs(network(), images, targets, MEAN, STD, cfg, torch.Generator().manual_seed(1),
                               forward=lambda module, x: calls.append("pairs") or network_forward(module, x))
    assert losses == pretrain_on_pairs(network(), images, targets, MEAN, STD, cfg, torch.Generator().manual_seed(1))
    through = _other_loops(network_forward, calls)
    assert {loop: calls.count(loop) for loop in set(calls)} == {"pairs": 9, "full": 4, "labels": 6, "finetune": 12}
    plain = _other_loops(lambda module, x: module(x))
    for one, other in zip(through, plain, strict=True):
        assert one == other if isinstance(one, (dict, list)) else torch.equal(one, other)


def test_compile_on_where_torch_compile_is_unavailable_is_refused_before_any_work(monkeypatch):
    import pytest

    import ssdd.run.compiled as compiled_module
    from ssdd.evaluation.fastpath import NetworkForwards

    monkeypatch.setattr(compiled_module, "compile_unavailable", lambda device: "no compiler here")
    arch = ModelConfig(name="convnet", width=4, depth=2)
    with pytest.raises(ValueError, match=r"^compile=on: torch.compile is unavailable \(no compiler here\); use "
                                         r"compile=off$"):
        NetworkForwards("on", torch.device("cpu"), [arch])
    assert not NetworkForwards("auto", torch.device("cpu"), [arch]).active(arch)  # auto: on CUDA only
