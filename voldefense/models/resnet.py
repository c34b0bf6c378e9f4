"""ResNet50 (bottleneck blocks, stride on the 3x3 convolution as in torchvision's "v1.5"), modules only.

With ``stem="imagenet"``, ``width=1`` and 1000 classes: torchvision's ``resnet50`` (25,557,032 parameters).
``stem="small"`` replaces the 7x7/stride-2 convolution and the max pool by a 3x3/stride-1 convolution (the
usual
CIFAR stem), for a total stride of 8: a 16x16 patch ends at 2x2.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from voldefense.models.layers import MeanStd, Normalize, check_common, scaled

LAYERS = (3, 4, 6, 3)
EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.downsample(x))


class ResNet(nn.Module):
    def __init__(
        self,
        layers: tuple[int, ...] = LAYERS,
        num_classes: int = 10,
        *,
        width: float = 1.0,
        stem: str = "small",
        in_channels: int = 3,
        mean: MeanStd = 0.5,
        std: MeanStd = 0.25,
    ):
        super().__init__()
        check_common(width, stem, in_channels)
        self.normalize = Normalize(mean, std, in_channels)
        channels = scaled(64, width)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, channels, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        stages = []
        for index, blocks in enumerate(layers):
            planes = scaled(64 * 2**index, width)
            stride = 1 if index == 0 else 2
            stage = []
            for block in range(blocks):
                stage.append(Bottleneck(channels, planes, stride if block == 0 else 1))
                channels = planes * EXPANSION
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


# ResNet50's block counts bound; a partial (not a wrapper taking **options) so its signature is ResNet's own.
resnet50 = partial(ResNet, LAYERS)
