"""VGG-11 with BatchNorm for CIFAR-sized images (torchvision's configuration "A"), without the classifier.

Layers are conv3x3 -> BatchNorm -> ReLU with max-pools, channels [w, M, 2w, M, 4w, 4w, M, 8w, 8w, M, 8w, 8w, M]
where w = cfg.width or 64, followed by a global average pool: feature_dim = 8w (512 by default). The module tree
is named as torchvision's `vgg11_bn().features`, so a width-64 model has exactly its convolutional parameters.
A max-pool is skipped when the map is already smaller than 2x2, so 32 px (ending at 1x1), 16 px and smaller
inputs all work with the same network.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ssdd.config import ModelConfig
from ssdd.models.registry import register

# torchvision.models.vgg.cfgs["A"] in units of the first layer's width; "M" is a 2x2 max-pool.
VGG11_PLAN: tuple[int | str, ...] = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


class SafeMaxPool2d(nn.MaxPool2d):
    """2x2 max-pool that leaves maps smaller than 2x2 (in either side) unchanged instead of emptying them."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 2 or x.shape[-2] < 2:
            return x
        return F.max_pool2d(x, 2, 2)


class CifarVGG(nn.Module):
    def __init__(self, plan: tuple[int | str, ...] = VGG11_PLAN, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in plan:
            if item == "M":
                layers.append(SafeMaxPool2d())
                continue
            out = int(item) * width
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels
        for module in self.modules():  # torchvision's VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


@register("vgg11")
def vgg11(cfg: ModelConfig, resolution: int) -> nn.Module:
    return CifarVGG(VGG11_PLAN, cfg.width or 64)
