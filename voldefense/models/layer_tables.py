"""Which 2D layers the 2D→3D converter (`voldefense.models.convert`) passes through unchanged, which containers it
trusts, and which it refuses; kept apart so the lists can be read (and extended by a converter rule) at a glance."""

from __future__ import annotations

from torch import nn

from voldefense.models.layers import Normalize, PatchFlatten, SqueezeExcitation, StochasticDepth

KEEPS_DEPTH = "keeps_depth"
"""Attribute name: a 2D pooling module with ``keeps_depth = True`` never pools the patch axis, even with
``pool_depth=True`` (for pools in parallel with convolutions, such as Inception's reduction branches)."""

# Parameter-free or per-channel layers whose forward works on any number of spatial axes.
PASSTHROUGH: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Dropout,
    nn.AlphaDropout,
    nn.Linear,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
    nn.ReflectionPad2d,
    nn.ReplicationPad2d,
    Normalize,
    PatchFlatten,
    StochasticDepth,
)

# Containers whose own forward is known to be dimension-agnostic.
KNOWN_CONTAINERS: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
    SqueezeExcitation,
)

# Layers with no sound 3D counterpart (or already 3D): converting them is an error naming the layer.
NO_3D: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.BatchNorm1d,
    nn.BatchNorm3d,
    nn.InstanceNorm1d,
    nn.InstanceNorm3d,
    nn.MaxPool1d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool3d,
    nn.Dropout1d,
    nn.Dropout3d,
    nn.Upsample,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.Unflatten,
    nn.Fold,
    nn.Unfold,
    nn.MaxUnpool2d,
    nn.LayerNorm,
    nn.Embedding,
    nn.RNNBase,
    nn.MultiheadAttention,
    nn.Transformer,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Softmax2d,
)
