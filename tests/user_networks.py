"""Two 2D classifiers a user might bring, which the 2D→3D converter refuses (LayerNorm, attention): a
ConvNeXt-style network and a tiny ViT. Written here because torchvision is not a dependency.

Not a test module: test modules import it by its bare name (tests/ is on sys.path, see tiny_quickstart.py).
`backbone_plugin()` registers both as backbone plugins, with the options the runner passes (``width``,
``stem``, ``in_channels``).
"""

from __future__ import annotations

import torch
from torch import nn

from voldefense.hookspecs import hookimpl
from voldefense.specs import BackboneSpec


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of `(B, C, H, W)` feature maps, as ConvNeXt uses it."""

    def __init__(self, channels: int):
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 convolution, LayerNorm over channels, pointwise MLP with GELU, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, 4 * dim, 1), nn.GELU(), nn.Conv2d(4 * dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(self.dwconv(x)))


def convnext(num_classes: int = 10, width: float = 1.0, stem: str = "small", in_channels: int = 3) -> nn.Module:
    """Patchify stem (4x4, stride 4), two ConvNeXt blocks, global pool, LayerNorm, linear head."""
    dim = max(8, round(128 * width))
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(in_channels, dim, 4, stride=4), LayerNorm2d(dim)),
        ConvNeXtBlock(dim),
        ConvNeXtBlock(dim),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.LayerNorm(dim),
        nn.Linear(dim, num_classes),
    )


class TinyViT(nn.Module):
    """Patch embedding (4x4 tokens), a class token, one pre-norm attention block and a linear head on the class
    token. Positional embeddings for `image_size` inputs (16: the patches g sees)."""

    def __init__(self, num_classes: int = 10, dim: int = 32, in_channels: int = 3, image_size: int = 16):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, (image_size // 4) ** 2 + 1, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos
        h = self.norm1(tokens)
        tokens = tokens + self.attn(h, h, h, need_weights=False)[0]
        tokens = tokens + self.mlp(self.norm2(tokens))
        return self.head(tokens[:, 0])


def vit(num_classes: int = 10, width: float = 1.0, stem: str = "small", in_channels: int = 3) -> nn.Module:
    return TinyViT(num_classes, dim=2 * max(4, round(32 * width)), in_channels=in_channels)


FACTORIES = {"user_convnext": convnext, "user_vit": vit}


def backbone_plugin() -> object:
    """A plugin object registering both networks as backbones (``user_convnext``, ``user_vit``)."""

    class UserNetworks:
        @hookimpl
        def voldefense_backbones(self):
            for name, factory in FACTORIES.items():
                yield BackboneSpec(name=name, factory=factory, description=f"{name} (test network)")

    return UserNetworks()
