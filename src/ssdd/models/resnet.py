"""ResNets with the CIFAR stem (3x3 conv, stride 1, padding 2 as solo-learn; no max-pool; no fc).

Built from torchvision's BasicBlock with torchvision's attribute names, so a width-64 ResNet-18 here
has exactly the parameters of `torchvision.models.resnet18` minus `fc` (a test checks this).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from ssdd.config import ModelConfig
from ssdd.models.registry import register


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2), width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        stages = []
        for index, blocks in enumerate(blocks_per_stage):
            stages.append(self._make_stage(width * 2**index, blocks, stride=1 if index == 0 else 2))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = width * 2 ** (len(blocks_per_stage) - 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


@register("resnet18")
def resnet18(cfg: ModelConfig, resolution: int) -> nn.Module:
    return CifarResNet((2, 2, 2, 2), cfg.width or 64)


@register("resnet10")
def resnet10(cfg: ModelConfig, resolution: int) -> nn.Module:
    return CifarResNet((1, 1, 1, 1), cfg.width or 64)
