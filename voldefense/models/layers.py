"""Small building blocks shared by the backbones, all written so that one definition runs in 2D and 3D.

Every module here is dimension-agnostic: it reads the number of spatial axes from its input instead of
assuming
two, so the generic converter (`voldefense.models.convert`) can keep it as it is when it turns a 2D network
into
its 3D counterpart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
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


class DepthwiseConv3d(nn.Conv3d):
    """A depthwise `nn.Conv3d` (groups == in == out channels, depth stride and dilation 1, zero padding) that
    can compute itself as dk depthwise 2D convolutions, one per depth tap, summed with depth shifts.

    Same parameters, state-dict layout and results as `nn.Conv3d` (within float rounding: the taps are summed
    in a different order); only the kernels differ. cuDNN's grouped Conv3d with groups == channels is slow
    (EfficientNet-B0's g trained 4-7x slower than f on an H200), while depthwise Conv2d is a fast, tuned
    kernel. Each tap ``j`` runs one depthwise Conv2d over the volume viewed as ``(B, C·D, H, W)`` (groups
    C·D, the tap's kernel repeated over the D slices), which needs no copy of the activations in either
    direction: the output ``(B, C·D, H', W')`` already is ``(B, C, D, H', W')``. Tap j's slice i lands on
    output depth ``i + pad - j``; slices that would land outside the output are computed and dropped (at most
    ``dk - 1`` of D per tap), which costs less than copying the in-range ones into a contiguous batch.

    `decompose` picks the path: None (default) = by measurement per device, the 2D taps on CUDA; on CPU the
    taps when autograd records (training, attacks: an EfficientNet-B0 g's training step measured ~25% faster)
    and oneDNN's Conv3d under `no_grad` (inference measured ~25% faster with Conv3d); `nn.Conv3d` on other
    devices (not measured, e.g. MPS). True / False force the taps / `nn.Conv3d`. Set it on the class to
    switch every instance, or on one instance.
    """

    decompose: ClassVar[bool | None] = None

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if not self.supports_decomposition():
            raise ValueError(
                "DepthwiseConv3d needs groups == in_channels == out_channels, depth stride and dilation 1, "
                "zero padding and numeric padding; use nn.Conv3d for other convolutions"
            )

    def supports_decomposition(self) -> bool:
        return (
            self.groups == self.in_channels == self.out_channels
            and self.stride[0] == 1
            and self.dilation[0] == 1
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        )

    def uses_taps(self, x: torch.Tensor) -> bool:
        """Whether `forward(x)` runs the 2D taps (see `decompose`)."""
        choice = self.decompose
        if choice is not None:
            return bool(choice)
        if x.device.type == "cuda":
            return True
        return x.device.type == "cpu" and torch.is_grad_enabled() and (
            x.requires_grad or self.weight.requires_grad
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or not self.uses_taps(x):
            return super().forward(x)
        return self._taps(x)

    def _taps(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        dk, kh, kw = self.kernel_size
        pad = int(self.padding[0])  # type: ignore[index]
        d_out = d + 2 * pad - dk + 1
        if d_out < 1:
            return super().forward(x)  # let Conv3d raise its usual size error
        # (C, 1, dk, kh, kw) -> one (C·D, 1, kh, kw) kernel per tap: channel c's tap repeated over the D slices.
        weights = self.weight.permute(2, 0, 1, 3, 4).unsqueeze(2).expand(dk, c, d, 1, kh, kw)
        weights = weights.reshape(dk, c * d, 1, kh, kw)
        flat = x.reshape(b, c * d, h, w)
        conv = dict(stride=self.stride[1:], padding=tuple(self.padding[1:]), dilation=self.dilation[1:])  # type: ignore[index]
        out: torch.Tensor | None = None
        pending: list[tuple[int, int, torch.Tensor]] = []
        for j in range(dk):
            # Output depth o reads input slice i = o + j - pad; keep the o that have such a slice.
            o0, o1 = max(0, pad - j), min(d_out, d + pad - j)
            if o1 <= o0:
                continue
            y = F.conv2d(flat, weights[j], None, groups=c * d, **conv)  # type: ignore[arg-type]
            y = y.view(b, c, d, *y.shape[2:])[:, :, o0 + j - pad : o1 + j - pad]
            if out is None and (o0, o1) == (0, d_out):
                out = y.contiguous() if y.shape[2] != d else y  # the first full-range tap starts the sum
            else:
                pending.append((o0, o1, y))
        if out is None:
            o0, o1, y = pending[0]
            out = y.new_zeros(b, c, d_out, *y.shape[3:])
        for o0, o1, y in pending:
            # In place into out's slice: a conv output is not saved for backward, so this is autograd-safe.
            out[:, :, o0:o1] += y
        if self.bias is not None:
            out.add_(self.bias.view(1, c, 1, 1, 1))
        return out
