"""torchvision's MobileNetV2 adapted to CIFAR-sized images, without the classifier.

Two changes to `torchvision.models.mobilenet_v2`: the stem convolution has stride 1 instead of 2, and the first
inverted-residual block with stride 2 (features[2]) has its depthwise convolution set to stride 1. A 32 px input
therefore ends at 4x4 (16 px at 2x2) instead of 1x1; a global average pool gives the feature.

Width: cfg.width is the number of stem channels, which is 32 in the standard network, so
width_mult = cfg.width / 32 (cfg.width = 0 means width_mult 1.0). The feature is the last 1x1 convolution,
feature_dim = torchvision's `last_channel` = 1280 * max(1, width_mult) rounded to a multiple of 8
(1280 by default and for any width <= 32). Module names match torchvision's, minus `classifier`.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

from ssdd.config import ModelConfig
from ssdd.models.registry import register


class CifarMobileNetV2(nn.Module):
    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        net = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult)
        features = net.features
        features[0][0].stride = (1, 1)  # stem conv
        for block in features:
            if isinstance(block, InvertedResidual) and block.stride == 2:
                depthwise = next(m for m in block.conv.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2))
                depthwise.stride = (1, 1)
                block.stride = 1  # inp != oup in this block, so it stays without a residual connection
                break
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = int(net.last_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


@register("mobilenetv2")
def mobilenetv2(cfg: ModelConfig, resolution: int) -> nn.Module:
    return CifarMobileNetV2(cfg.width / 32 if cfg.width else 1.0)
