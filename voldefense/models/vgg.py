"""VGG16 (configuration D), written once with modules only so it converts to 3D.

``batch_norm=True`` gives VGG16-BN (torchvision's ``vgg16_bn``, 138,365,992 parameters at full size): much
easier to train at small width, which is why the CPU quickstart uses it.

With ``stem="imagenet"``, ``width=1`` and 1000 classes the structure and parameter count (138,357,544) are
torchvision's ``vgg16``. ``stem="small"`` is for CIFAR-size images and single patches: max pooling only after
the first three of the five convolution stages (total stride 8, so a 16x16 patch ends at 2x2 instead of
collapsing to nothing), a global average pool, and a classifier whose hidden width is 512·width instead of
4096.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from voldefense.models.layers import MeanStd, Normalize, check_common, scaled

# Output channels of each convolution, grouped by stage; a max pool ends each stage.
STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


class VGG(nn.Module):
    def __init__(
        self,
        stages: tuple[tuple[int, ...], ...] = STAGES,
        num_classes: int = 10,
        *,
        width: float = 1.0,
        stem: str = "small",
        in_channels: int = 3,
        mean: MeanStd = 0.5,
        std: MeanStd = 0.25,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ):
        super().__init__()
        check_common(width, stem, in_channels)
        self.normalize = Normalize(mean, std, in_channels)
        layers: list[nn.Module] = []
        channels = in_channels
        for index, stage in enumerate(stages):
            for out in stage:
                layers.append(nn.Conv2d(channels, scaled(out, width), 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(scaled(out, width)))
                layers.append(nn.ReLU(inplace=True))
                channels = scaled(out, width)
            # Identity keeps the module indices of both stems aligned (features.N is the same layer).
            pool = stem == "imagenet" or index < 3
            layers.append(nn.MaxPool2d(2, 2) if pool else nn.Identity())
        self.features = nn.Sequential(*layers)
        spatial = 7 if stem == "imagenet" else 1
        hidden = scaled(4096 if stem == "imagenet" else 512, width)
        self.avgpool = nn.AdaptiveAvgPool2d(spatial)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(channels * spatial * spatial, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and stem == "imagenet":
                # torchvision's init, tuned for 4096-wide layers; with the small stem's narrow classifier it
                # shrinks the logits ~100x and stalls training, so there PyTorch's default init is kept.
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.classifier(self.flatten(self.avgpool(x)))


# VGG16 = configuration D; a partial (not a wrapper taking **options) so its signature is VGG's own options.
vgg16 = partial(VGG, STAGES)
