"""Small building blocks shared by the backbones, all written so that one definition runs in 2D and 3D.

Every module here is dimension-agnostic: it reads the number of spatial axes from its input instead of
assuming
two, so the generic converter (`voldefense.models.convert`) can keep it as it is when it turns a 2D network
into
its 3D counterpart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from voldefense.errors import ConfigError

MeanStd = float | Sequence[float] | None


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `value` to a multiple of `divisor`, never going more than 10% below it (EfficientNet's rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scaled(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def check_common(width: float, stem: str, in_channels: int) -> None:
    """Validate the options every built-in backbone takes; raise a one-line ConfigError naming the fix."""
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ConfigError(
            f"width must be a positive number (a channel multiplier such as 0.25), not {width!r}"
        )
    if stem not in ("small", "imagenet"):
        raise ConfigError(
            "stem must be 'small' (CIFAR-size images or patches) or 'imagenet' (224px-scale inputs), "
            f"not {stem!r}"
        )
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ConfigError(
            f"in_channels must be a positive integer (3 for RGB, 1 for grayscale), not {in_channels!r}"
        )


def _channel_values(value: float | Sequence[float], channels: int, what: str) -> list[float]:
    try:
        values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number or a list of numbers, not {value!r}") from None
    if len(values) not in (1, channels):
        raise ConfigError(f"{what} needs 1 or {channels} values (one per input channel), got {len(values)}")
    return values * (channels if len(values) == 1 else 1)


class Normalize(nn.Module):
    """Per-channel `(x - mean) / std` inside the model, so attacks work in [0, 1] pixel space.

    Channel is axis 1 in both layouts (images `(B, C, H, W)`, volumes `(B, C, N, h, w)`); the statistics are
    reshaped to the input's number of axes at run time. `mean=None, std=None` makes it the identity.
    """

    def __init__(self, mean: MeanStd, std: MeanStd, channels: int):
        super().__init__()
        mean_v = [0.0] * channels if mean is None else _channel_values(mean, channels, "mean")
        std_v = [1.0] * channels if std is None else _channel_values(std, channels, "std")
        if min(std_v) <= 0:
            raise ConfigError(f"std must be positive, got {std_v}")
        # Persistent buffers: a checkpoint carries the normalisation the model was trained with.
        self.register_buffer("mean", torch.tensor(mean_v))
        self.register_buffer("std", torch.tensor(std_v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"channels={self.mean.numel()}"


class PatchFlatten(nn.Module):
    """The 3D counterpart of `nn.Flatten()` before a classifier: `(B, C, N, h, w) -> (B, N, C*h*w)`.

    Keeping the patch axis N is what turns the 2D global-pool classifier into a per-patch head: the Linear
    layers that follow act on the last axis, so each patch's features map to its own class scores `(B, N, K)`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"PatchFlatten expects (B, C, N, ...) features, got shape {tuple(x.shape)}")
        # Contiguous, so that a following Dropout draws its mask over the same element order as the 2D model
        # run on the folded batch (B*N, F).
        return x.transpose(1, 2).contiguous().flatten(2)


class StochasticDepth(nn.Module):
    """Drop a residual branch for a whole sample with probability `p` during training ("row" mode)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"stochastic depth probability must be in [0, 1), not {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * noise / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvBNAct(nn.Sequential):
    """Convolution (no bias), batch norm and an optional activation: the unit most backbones repeat."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int = 1,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        eps: float = 1e-5,
        activation: type[nn.Module] | None = nn.ReLU,
    ):
        if padding is None:
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = (ks[0] // 2, ks[1] // 2)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=eps),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool, two 1x1 convolutions, sigmoid gate (as in EfficientNet).

    Only modules are used, so in 3D the pool keeps the patch axis and each patch gets its own gate.
    """

    def __init__(self, channels: int, squeeze_channels: int, activation: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation()
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale
