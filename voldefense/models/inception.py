"""InceptionV3, modules only (the branch pools are `nn.AvgPool2d`/`nn.MaxPool2d` modules, not functional
calls).

With ``stem="imagenet"``, ``width=1``, 1000 classes and ``aux_logits=True``: torchvision's ``inception_v3``
(27,161,264 parameters; 23,834,568 without the auxiliary classifier). ``stem="small"`` pads the stem's 3x3
convolutions and drops its two max pools, so a 16x16 patch reaches the last block at 3x3 (the ImageNet stem
needs at least 75x75 inputs). The auxiliary classifier needs a 17x17-scale feature map, so it exists only with
the ImageNet stem; `forward` returns the main logits, `forward_with_aux` both (the aux logits only in
training).
"""

from __future__ import annotations

import torch
from torch import nn

from voldefense.errors import ConfigError
from voldefense.models.layers import ConvBNAct, MeanStd, Normalize, check_common, scaled

EPS = 1e-3  # batch-norm epsilon of the reference implementation


def _conv(cin: int, cout: int, kernel: int | tuple[int, int], *, stride: int = 1, padding=0) -> ConvBNAct:
    return ConvBNAct(cin, cout, kernel, stride=stride, padding=padding, eps=EPS)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int, c):
        super().__init__()
        self.branch1x1 = _conv(cin, c(64), 1)
        self.branch5x5 = nn.Sequential(_conv(cin, c(48), 1), _conv(c(48), c(64), 5, padding=2))
        self.branch3x3dbl = nn.Sequential(
            _conv(cin, c(64), 1), _conv(c(64), c(96), 3, padding=1), _conv(c(96), c(96), 3, padding=1)
        )
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, c(pool_features), 1))
        self.out_channels = c(64) * 2 + c(96) + c(pool_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int, c):
        super().__init__()
        self.branch3x3 = _conv(cin, c(384), 3, stride=2)
        self.branch3x3dbl = nn.Sequential(
            _conv(cin, c(64), 1), _conv(c(64), c(96), 3, padding=1), _conv(c(96), c(96), 3, stride=2)
        )
        self.branch_pool = nn.MaxPool2d(3, 2)
        self.branch_pool.keeps_depth = True  # concatenated with convolutions that keep the patch axis
        self.out_channels = c(384) + c(96) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int, c):
        super().__init__()
        c7 = c(channels_7x7)
        self.branch1x1 = _conv(cin, c(192), 1)
        self.branch7x7 = nn.Sequential(
            _conv(cin, c7, 1),
            _conv(c7, c7, (1, 7), padding=(0, 3)),
            _conv(c7, c(192), (7, 1), padding=(3, 0)),
        )
        self.branch7x7dbl = nn.Sequential(
            _conv(cin, c7, 1),
            _conv(c7, c7, (7, 1), padding=(3, 0)),
            _conv(c7, c7, (1, 7), padding=(0, 3)),
            _conv(c7, c7, (7, 1), padding=(3, 0)),
            _conv(c7, c(192), (1, 7), padding=(0, 3)),
        )
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, c(192), 1))
        self.out_channels = 4 * c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(x)], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int, c):
        super().__init__()
        self.branch3x3 = nn.Sequential(_conv(cin, c(192), 1), _conv(c(192), c(320), 3, stride=2))
        self.branch7x7x3 = nn.Sequential(
            _conv(cin, c(192), 1),
            _conv(c(192), c(192), (1, 7), padding=(0, 3)),
            _conv(c(192), c(192), (7, 1), padding=(3, 0)),
            _conv(c(192), c(192), 3, stride=2),
        )
        self.branch_pool = nn.MaxPool2d(3, 2)
        self.branch_pool.keeps_depth = True  # concatenated with convolutions that keep the patch axis
        self.out_channels = c(320) + c(192) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch7x7x3(x), self.branch_pool(x)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, c):
        super().__init__()
        self.branch1x1 = _conv(cin, c(320), 1)
        self.branch3x3_1 = _conv(cin, c(384), 1)
        self.branch3x3_2a = _conv(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = _conv(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = nn.Sequential(_conv(cin, c(448), 1), _conv(c(448), c(384), 3, padding=1))
        self.branch3x3dbl_3a = _conv(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _conv(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, c(192), 1))
        self.out_channels = c(320) + 4 * c(384) + c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_1(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(a),
                self.branch3x3_2b(a),
                self.branch3x3dbl_3a(b),
                self.branch3x3dbl_3b(b),
                self.branch_pool(x),
            ],
            1,
        )


class InceptionAux(nn.Module):
    def __init__(self, cin: int, num_classes: int, c):
        super().__init__()
        self.pool = nn.AvgPool2d(5, 3)
        self.conv0 = _conv(cin, c(128), 1)
        self.conv1 = _conv(c(128), c(768), 5)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c(768), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.avgpool(self.conv1(self.conv0(self.pool(x))))))


class Inception3(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        *,
        width: float = 1.0,
        stem: str = "small",
        in_channels: int = 3,
        mean: MeanStd = 0.5,
        std: MeanStd = 0.25,
        dropout: float = 0.5,
        aux_logits: bool = False,
    ):
        super().__init__()
        check_common(width, stem, in_channels)
        if aux_logits and stem != "imagenet":
            raise ConfigError("aux_logits needs stem 'imagenet' (its 5x5 convolution expects 17x17 features)")

        def c(channels: int) -> int:
            return scaled(channels, width)

        big = stem == "imagenet"
        self.normalize = Normalize(mean, std, in_channels)
        self.Conv2d_1a_3x3 = _conv(in_channels, c(32), 3, stride=2 if big else 1, padding=0 if big else 1)
        self.Conv2d_2a_3x3 = _conv(c(32), c(32), 3, padding=0 if big else 1)
        self.Conv2d_2b_3x3 = _conv(c(32), c(64), 3, padding=1)
        self.maxpool1: nn.Module = nn.MaxPool2d(3, 2) if big else nn.Identity()
        self.Conv2d_3b_1x1 = _conv(c(64), c(80), 1)
        self.Conv2d_4a_3x3 = _conv(c(80), c(192), 3, padding=0 if big else 1)
        self.maxpool2: nn.Module = nn.MaxPool2d(3, 2) if big else nn.Identity()
        self.Mixed_5b = InceptionA(c(192), 32, c)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, 64, c)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, 64, c)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, c)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, 128, c)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, 160, c)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, 160, c)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, 192, c)
        self.AuxLogits = InceptionAux(self.Mixed_6e.out_channels, num_classes, c) if aux_logits else None
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, c)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, c)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, c)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(self.Mixed_7c.out_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.1, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x))))
        x = self.Mixed_6a(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        return self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        # Dropout after Flatten: the same elements in the same order in 2D, 3D and folded layouts.
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._head(self._trunk(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Main logits and, in training mode with `aux_logits`, the auxiliary classifier's logits."""
        features = self._trunk(x)
        aux = self.AuxLogits(features) if self.AuxLogits is not None and self.training else None
        return self._head(features), aux


inception_v3 = Inception3  # the builder is the class: its signature lists every option once
