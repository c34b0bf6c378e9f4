"""WideResNet (Zagoruyko & Komodakis 2016, "Wide Residual Networks"): WRN-depth-k with pre-activation blocks.

Built from standard layers (Conv2d, BatchNorm2d, ReLU, Dropout, pooling, Flatten, Linear), voldefense's
dimension-agnostic `Normalize`, and plain tensor addition in the blocks; the head is separate Flatten and
Linear modules, not a ``torch.flatten`` call. That is all voldefense's generic converter needs to build the 3D
counterpart layer by layer, so this package ships no converter of its own.

Options follow the built-in backbones (``width``, ``stem``, ``in_channels``, ``mean``, ``std``, checked by the
same `voldefense.models.layers.check_common`), plus WRN's own ``depth``, ``widen_factor`` and ``dropout``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import Tensor, nn

from voldefense.errors import ConfigError
from voldefense.models.layers import MeanStd, Normalize, check_common, scaled


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3 plus a shortcut: a 1x1 convolution of the pre-activation when
    the shape changes, the identity otherwise."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(pre)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Sequential):
    """Normalisation, stem, three groups of residual blocks, BN-ReLU and the classifier head: images
    ``(B, C, H, W)`` in [0, 1] → logits ``(B, K)``."""


def wide_resnet(
    num_classes: int = 10,
    *,
    width: float = 1.0,
    stem: Literal["small", "imagenet"] = "small",
    in_channels: int = 3,
    mean: MeanStd = 0.5,
    std: MeanStd = 0.25,
    depth: int = 16,
    widen_factor: int = 4,
    dropout: float = 0.0,
) -> WideResNet:
    """WRN-``depth``-``widen_factor`` with every channel count multiplied by ``width``.

    ``stem="small"`` is the CIFAR stem (3x3 conv, stride 1), which leaves a 16x16 patch at 4x4 after the two
    stride-2 groups; ``"imagenet"`` uses a 7x7 stride-2 conv and a max-pool for large inputs.
    """
    check_common(width, stem, in_channels)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
        raise ConfigError(f"wide_resnet: depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), not {depth!r}")
    if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
        raise ConfigError(f"wide_resnet: widen_factor must be a positive integer, not {widen_factor!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"wide_resnet: num_classes must be a positive integer, not {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"wide_resnet: dropout must be in [0, 1), not {dropout!r}")
    blocks_per_group = (depth - 4) // 6
    channels = [scaled(c, width) for c in (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)]

    layers: dict[str, nn.Module] = {"normalize": Normalize(mean, std, in_channels)}
    if stem == "imagenet":
        layers["stem"] = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    else:
        layers["stem"] = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)
    in_c = channels[0]
    for group, (out_c, stride) in enumerate(zip(channels[1:], (1, 2, 2), strict=True), start=1):
        blocks = []
        for i in range(blocks_per_group):
            blocks.append(PreActBlock(in_c, out_c, stride if i == 0 else 1, dropout))
            in_c = out_c
        layers[f"group{group}"] = nn.Sequential(*blocks)
    layers["bn"] = nn.BatchNorm2d(in_c)
    layers["relu"] = nn.ReLU()
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(in_c, num_classes)

    model = WideResNet(OrderedDict(layers))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
    return model
