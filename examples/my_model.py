"""An example of "your own model": a small ResNet-style CNN written the way users write one.

Used by configs/examples/your_model.yaml and docs/your_model.md::

    model:
      factory: examples.my_model:small_resnet     # "package.module:function", imported from the current folder
      options: {width: 16}                          # the function's own arguments

Two things make a 2D model convertible to g's 3D network (docs/your_model.md): normalisation inside the model
(attacks work on pixels in [0, 1]) and a forward made of modules only — ``nn.Flatten()`` and
``nn.AdaptiveAvgPool2d`` modules rather than ``torch.flatten(x, 1)`` or ``F.adaptive_avg_pool2d``, which assume
exactly two spatial axes. ``x + y`` and ``torch.cat(..., dim=1)`` work in both layouts.
"""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel (x - mean) / std for inputs in [0, 1]; buffers broadcast over 2D images and 3D volumes."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x.dim() - 2)  # (C, 1, 1) for images, (C, 1, 1, 1) for volumes
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def voldefense_to_3d(self, context: object) -> nn.Module:
        """A converter rule (docs/plugins.md, "Converter rules"): this layer already works on volumes, so g keeps
        it as it is. Without it voldefense keeps the layer too, with a warning that it must work on volumes."""
        return self


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def small_resnet(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> nn.Module:
    """A 3-stage ResNet (6 basic blocks): images (B, C, H, W) in [0, 1] -> logits (B, num_classes)."""
    return nn.Sequential(
        Normalize((0.4914, 0.4822, 0.4465)[:in_channels], (0.2470, 0.2435, 0.2616)[:in_channels]),
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        BasicBlock(width, width),
        BasicBlock(width, width),
        BasicBlock(width, 2 * width, stride=2),
        BasicBlock(2 * width, 2 * width),
        BasicBlock(2 * width, 4 * width, stride=2),
        BasicBlock(4 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )
