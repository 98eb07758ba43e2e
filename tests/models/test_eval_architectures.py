"""Cross-architecture evaluation backbones: VGG-11, AlexNet, MobileNetV2, ViT at CIFAR-like resolutions."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from ssdd.config import ModelConfig
from ssdd.models import available, build_model
from ssdd.models.vgg import SafeMaxPool2d

SMALL = {
    "vgg11": ModelConfig(name="vgg11", width=8),
    "alexnet": ModelConfig(name="alexnet", width=8),
    "mobilenetv2": ModelConfig(name="mobilenetv2", width=8),  # width_mult 0.25
    "vit_small": ModelConfig(name="vit_small", width=32, depth=2),
}
SMALL_DIMS = {"vgg11": 64, "alexnet": 16, "mobilenetv2": 1280, "vit_small": 32}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_registry_lists_evaluation_architectures():
    assert {"vgg11", "alexnet", "mobilenetv2", "vit_small"} <= set(available())


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("resolution", [32, 16, 64])
def test_forward_backward(name, resolution):
    torch.manual_seed(0)
    model = build_model(SMALL[name], resolution)
    assert model.feature_dim == SMALL_DIMS[name]
    model.train()
    out = model(torch.rand(3, 3, resolution, resolution))
    assert out.shape == (3, model.feature_dim)
    assert torch.isfinite(out).all()
    (out**2).mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(
    ("cfg", "dim"),
    [
        (ModelConfig(name="vgg11"), 512),
        (ModelConfig(name="alexnet"), 128),
        (ModelConfig(name="mobilenetv2"), 1280),
        (ModelConfig(name="vit_small"), 256),
    ],
    ids=lambda v: v.name if isinstance(v, ModelConfig) else str(v),
)
def test_default_feature_dims(cfg, dim):
    model = build_model(cfg, 32)
    assert model.feature_dim == dim
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, dim)


def test_vit_defaults_and_widths():
    model = build_model(ModelConfig(name="vit_small"), 32)
    assert model.patch_size == 4 and len(model.encoder.layers) == 6
    assert isinstance(model.heads, nn.Identity)
    assert model.encoder.layers[0].self_attention.num_heads == 8
    assert model.encoder.layers[0].mlp[0].out_features == 512
    assert build_model(ModelConfig(name="vit_small", width=32, depth=2), 64).patch_size == 8


@pytest.mark.parametrize("width", [36, 20])
def test_vit_rejects_width_not_divisible_by_heads(width):
    with pytest.raises(ValueError, match="divisible by the number of heads 8"):
        build_model(ModelConfig(name="vit_small", width=width, depth=1), 32)


def test_vit_rejects_resolution_not_divisible_by_patch():
    with pytest.raises(ValueError, match="does not divide"):
        build_model(ModelConfig(name="vit_small", width=32, depth=1), 28)  # patch 3


def test_vgg11_matches_torchvision_features():
    from torchvision.models.vgg import cfgs, make_layers

    theirs = make_layers(cfgs["A"], batch_norm=True).state_dict()
    ours = build_model(ModelConfig(name="vgg11"), 32).features.state_dict()
    assert set(ours) == set(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in theirs)


def test_vgg11_width_and_pool_skipping():
    model = build_model(ModelConfig(name="vgg11", width=4), 16)
    convs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert convs == [4, 8, 16, 16, 32, 32, 32, 32]
    assert sum(isinstance(m, SafeMaxPool2d) for m in model.features) == 5
    model.eval()
    with torch.no_grad():  # 16 -> 8 -> 4 -> 2 -> 1, the fifth pool is skipped
        assert model.features(torch.rand(1, 3, 16, 16)).shape == (1, 32, 1, 1)
        assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 32, 1, 1)
    assert SafeMaxPool2d()(torch.rand(1, 2, 1, 5)).shape == (1, 2, 1, 5)


def test_alexnet_layout():
    model = build_model(ModelConfig(name="alexnet", width=4), 32)
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0], m.padding[0])
             for m in model.features if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 4, 5, 2), (4, 8, 5, 2), (8, 16, 3, 1), (16, 16, 3, 1), (16, 8, 3, 1)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 5
    model.eval()
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 8, 4, 4)


def test_mobilenetv2_cifar_strides_and_names():
    model = build_model(ModelConfig(name="mobilenetv2", width=8), 32)
    strided = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    assert strided == ["features.4.conv.1.0", "features.7.conv.1.0", "features.14.conv.1.0"]
    model.eval()
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 32, 32)).shape[-2:] == (4, 4)
    theirs = torchvision.models.mobilenet_v2(width_mult=0.25).state_dict()
    assert set(model.state_dict()) == {k for k in theirs if not k.startswith("classifier.")}
    assert build_model(ModelConfig(name="mobilenetv2", width=64), 32).feature_dim == 2560  # width_mult 2
