"""Backbones: registry, torchvision parity of the CIFAR ResNet, feature dimensions, gradients."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from ssdd.config import ModelConfig
from ssdd.models import available, build_model, describe
from ssdd.models.convnet import ConvNet
from ssdd.models.resnet import CifarResNet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_registry_lists_models():
    names = available()
    assert {"convnet", "resnet10", "resnet18"} <= set(names)
    assert names == sorted(names)


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="unknown model 'no_such_model'") as info:
        build_model(ModelConfig(name="no_such_model"), 32)
    for name in ("convnet", "resnet10", "resnet18"):
        assert name in str(info.value)


def test_describe_records_architecture():
    cfg = ModelConfig(name="convnet", width=8, depth=2, feature="pool")
    assert describe(cfg) == {"name": "convnet", "width": 8, "depth": 2, "feature": "pool"}


def test_resnet18_matches_torchvision_parameters():
    ours = CifarResNet((2, 2, 2, 2), width=64).state_dict()
    theirs = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if key == "conv1.weight":
            continue
        assert ours[key].shape == value.shape, key
        assert ours[key].dtype == value.dtype, key
    assert theirs["conv1.weight"].shape == (64, 3, 7, 7)
    assert ours["conv1.weight"].shape == (64, 3, 3, 3)


def test_resnet_cifar_stem():
    model = CifarResNet((2, 2, 2, 2), width=16)
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1) and model.conv1.padding == (2, 2)
    assert model.conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    assert not hasattr(model, "fc")
    # resnet10 has one block per stage
    r10 = CifarResNet((1, 1, 1, 1), width=16)
    assert [len(getattr(r10, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("cfg", "resolution", "dim"),
    [
        (ModelConfig(name="resnet18", width=16), 32, 128),
        (ModelConfig(name="resnet18", width=64), 16, 512),
        (ModelConfig(name="resnet18"), 8, 512),  # width 0 = default 64
        (ModelConfig(name="resnet10", width=8), 64, 64),
        (ModelConfig(name="resnet10", width=16), 16, 128),
        (ModelConfig(name="convnet"), 32, 8192),  # default: width 128, depth 3, flatten
        (ModelConfig(name="convnet", width=128, depth=3, feature="flatten"), 32, 8192),
        (ModelConfig(name="convnet", width=8, depth=3, feature="pool"), 32, 32),
        (ModelConfig(name="convnet", width=8, depth=2, feature="flatten"), 16, 16 * 4 * 4),
        (ModelConfig(name="convnet", width=4, depth=3, feature="flatten"), 64, 16 * 8 * 8),
        (ModelConfig(name="convnet", width=4, depth=2, feature="pool"), 64, 8),
    ],
    ids=lambda v: str(v) if not isinstance(v, ModelConfig) else f"{v.name}-w{v.width}-d{v.depth}-{v.feature}",
)
def test_feature_dim_matches_output(cfg, resolution, dim):
    model = build_model(cfg, resolution)
    assert model.feature_dim == dim
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, resolution, resolution))
    assert out.shape == (2, dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("resolution", "depth"), [(20, 3), (30, 2), (33, 1)])
def test_convnet_rejects_indivisible_resolution(resolution, depth):
    with pytest.raises(ValueError, match=f"divisible by {2**depth}"):
        ConvNet(resolution, width=4, depth=depth)


def test_convnet_rejects_bad_feature_and_norm():
    with pytest.raises(ValueError, match="flatten"):
        ConvNet(16, width=4, depth=2, feature="max")
    with pytest.raises(ValueError, match="norm"):
        ConvNet(16, width=4, depth=2, norm="layer")


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_convnet_norm_variants(norm):
    model = ConvNet(16, width=4, depth=2, norm=norm)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, model.feature_dim)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(name="resnet18", width=4),
        ModelConfig(name="resnet10", width=4),
        ModelConfig(name="convnet", width=4, depth=2, feature="flatten"),
        ModelConfig(name="convnet", width=4, depth=2, feature="pool"),
    ],
    ids=lambda c: f"{c.name}-{c.feature}",
)
def test_backward_gives_finite_gradients(cfg):
    torch.manual_seed(0)
    model = build_model(cfg, 8)
    model.train()
    out = model(torch.rand(3, 3, 8, 8))
    (out**2).mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_resnet_init_is_seeded():
    torch.manual_seed(1)
    a = CifarResNet((1, 1, 1, 1), width=4).state_dict()
    torch.manual_seed(1)
    b = CifarResNet((1, 1, 1, 1), width=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    bn = CifarResNet((1, 1, 1, 1), width=4).bn1
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))


def test_a_resolution_below_one_pixel_is_refused_in_one_line():
    import pytest

    from ssdd.config import ModelConfig
    from ssdd.models import build_model

    for resolution in (0, -16, 16.0):
        with pytest.raises(ValueError, match=r"^model 'convnet': the resolution is a whole number of pixels, at "
                                             r"least 1; got"):
            build_model(ModelConfig(name="convnet", width=8, depth=2), resolution)
    import numpy as np

    assert build_model(ModelConfig(name="convnet", width=8, depth=2), np.int64(16)).feature_dim == 16 * 4 * 4
