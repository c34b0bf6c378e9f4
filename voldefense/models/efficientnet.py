"""EfficientNet-B0: MBConv blocks with depthwise convolutions and squeeze-excitation, modules only.

With ``stem="imagenet"``, ``width=1`` and 1000 classes: torchvision's ``efficientnet_b0`` (5,288,548
parameters). Channels follow EfficientNet's rounding to multiples of 8 under the width multiplier.
``stem="small"`` uses stride 1 in the stem convolution and in the first strided stage, for a total stride of 8
(a 16x16 patch ends at 2x2) like the other backbones' small stems.
"""

from __future__ import annotations

import torch
from torch import nn

from voldefense.models.layers import (
    ConvBNAct,
    MeanStd,
    Normalize,
    SqueezeExcitation,
    StochasticDepth,
    check_common,
    make_divisible,
)

# (expand ratio, kernel, stride, input channels, output channels, layers): EfficientNet-B0, Table 1.
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand_ratio: int, kernel: int, stride: int, drop: float):
        super().__init__()
        expanded = make_divisible(cin * expand_ratio)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, activation=nn.SiLU))
        layers += [
            ConvBNAct(expanded, expanded, kernel, stride=stride, groups=expanded, activation=nn.SiLU),  # depthwise
            SqueezeExcitation(expanded, max(1, cin // 4)),
            ConvBNAct(expanded, cout, 1, activation=None),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout
        self.stochastic_depth = StochasticDepth(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.stochastic_depth(y) + x if self.use_residual else y


class EfficientNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        *,
        width: float = 1.0,
        stem: str = "small",
        in_channels: int = 3,
        mean: MeanStd = 0.5,
        std: MeanStd = 0.25,
        dropout: float = 0.2,
        stochastic_depth: float = 0.2,
    ):
        super().__init__()
        check_common(width, stem, in_channels)
        big = stem == "imagenet"
        self.normalize = Normalize(mean, std, in_channels)

        def c(channels: int) -> int:
            return make_divisible(channels * width)

        layers: list[nn.Module] = [ConvBNAct(in_channels, c(32), 3, stride=2 if big else 1, activation=nn.SiLU)]
        total = sum(stage[-1] for stage in STAGES)
        index = 0
        for position, (expand, kernel, stride, cin, cout, repeats) in enumerate(STAGES):
            if not big and position == 1:
                stride = 1
            blocks = []
            for repeat in range(repeats):
                # Stochastic depth grows linearly with the block's depth in the network, as in the reference.
                blocks.append(
                    MBConv(
                        c(cin) if repeat == 0 else c(cout),
                        c(cout),
                        expand,
                        kernel,
                        stride if repeat == 0 else 1,
                        stochastic_depth * index / total,
                    )
                )
                index += 1
            layers.append(nn.Sequential(*blocks))
        last = 4 * c(320)
        layers.append(ConvBNAct(c(320), last, 1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.classifier(self.flatten(self.avgpool(x)))


efficientnet_b0 = EfficientNet  # the builder is the class: its signature lists every option once
