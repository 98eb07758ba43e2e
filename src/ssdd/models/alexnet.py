"""The CIFAR AlexNet with BatchNorm used in dataset-distillation benchmarks (DC-BENCH, KRR-ST), without classifier.

Five convolutions, w = cfg.width or 64:
conv5x5(3, w)-BN-ReLU-MaxPool2, conv5x5(w, 2w)-BN-ReLU-MaxPool2, conv3x3(2w, 4w)-BN-ReLU,
conv3x3(4w, 4w)-BN-ReLU, conv3x3(4w, 2w)-BN-ReLU-MaxPool2, then a global average pool:
feature_dim = 2w (128 by default; a 32 px input ends at 4x4 before the pool). Pools skip maps below 2x2.
"""

from __future__ import annotations

import torch
from torch import nn

from ssdd.config import ModelConfig
from ssdd.models.registry import register
from ssdd.models.vgg import SafeMaxPool2d


def _block(cin: int, cout: int, kernel: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size=kernel, padding=kernel // 2), nn.BatchNorm2d(cout),
                               nn.ReLU(inplace=True)]
    return [*layers, SafeMaxPool2d()] if pool else layers


class CifarAlexNet(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(3, w, 5, pool=True),
            *_block(w, 2 * w, 5, pool=True),
            *_block(2 * w, 4 * w, 3, pool=False),
            *_block(4 * w, 4 * w, 3, pool=False),
            *_block(4 * w, 2 * w, 3, pool=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 2 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


@register("alexnet")
def alexnet(cfg: ModelConfig, resolution: int) -> nn.Module:
    return CifarAlexNet(cfg.width or 64)
