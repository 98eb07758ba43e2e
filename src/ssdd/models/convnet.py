"""ConvNets of the distillation literature: blocks of conv3x3 -> norm -> ReLU -> AvgPool2.

`convnet` is KRR-ST's: BatchNorm, widths doubling per block; for 32 px, 3 blocks of 128-256-512 channels
and a flattened 512x4x4 feature (8192-d). `convnet_mtt` is the ConvNet of MTT and MKDT (their ConvNetD3):
instance norm (GroupNorm with one group per channel, so no running statistics), the same width in every
block; for 32 px, 3 blocks of 128 channels and a flattened 128x4x4 feature (2048-d).
"""

from __future__ import annotations

import torch
from torch import nn

from ssdd.config import ModelConfig
from ssdd.models.registry import register


class ConvNet(nn.Module):
    def __init__(self, resolution: int = 32, width: int = 128, depth: int = 3, feature: str = "flatten",
                 norm: str = "batch", growth: int = 2) -> None:
        super().__init__()
        if resolution % 2**depth:
            raise ValueError(
                f"ConvNet with {depth} blocks needs a resolution divisible by {2**depth}, got {resolution}")
        if feature not in ("flatten", "pool"):
            raise ValueError(f"ConvNet feature must be 'flatten' or 'pool', got '{feature}'")
        layers: list[nn.Module] = []
        channels = 3
        for block in range(depth):
            out = width * growth**block
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), _norm(norm, out), nn.ReLU(inplace=True),
                       nn.AvgPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if feature == "pool" else nn.Identity()
        side = resolution // 2**depth
        self.feature_dim = channels if feature == "pool" else channels * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown ConvNet norm '{kind}' (batch, instance, none)")


@register("convnet")
def convnet(cfg: ModelConfig, resolution: int) -> nn.Module:
    feature = "flatten" if cfg.feature == "default" else cfg.feature
    return ConvNet(resolution, cfg.width or 128, cfg.depth or 3, feature)


@register("convnet_mtt")
def convnet_mtt(cfg: ModelConfig, resolution: int) -> nn.Module:
    feature = "flatten" if cfg.feature == "default" else cfg.feature
    return ConvNet(resolution, cfg.width or 128, cfg.depth or 3, feature, norm="instance", growth=1)
