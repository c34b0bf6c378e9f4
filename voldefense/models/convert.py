"""The generic 2D→3D converter: turns an image classifier f into its volumetric counterpart g.

`convert_to_3d` copies the model and replaces each standard 2D layer by its 3D twin *at the same module path*,
so parameter names stay those of the 2D model (only the convolution weights gain a depth axis). Forward code
is reused untouched; it must therefore be dimension-agnostic (modules only, no `F.max_pool2d` or
`x.view(B, -1)`), which is how every built-in backbone is written.

| 2D layer | 3D layer |
| --- | --- |
| `Conv2d(k, stride s, padding p)` | `Conv3d((dk, k, k), stride (1, s, s), padding (pd, p, p))`, groups kept |
| `BatchNorm2d`, `InstanceNorm2d` | `BatchNorm3d`, `InstanceNorm3d` (state copied) |
| `MaxPool2d`, `AvgPool2d` | 3D pools with depth window 1, or the spatial window when `pool_depth` (*) |
| `AdaptiveAvg/MaxPool2d(o)` | `Adaptive...3d((None, o, o))`: the patch axis is kept |
| `Dropout2d` | `Dropout3d` |
| `Flatten()` | `PatchFlatten`: `(B, C, N, h, w) → (B, N, C·h·w)`, so the classifier becomes per-patch |
| activations, `Linear`, `Dropout`, `Identity`, `GroupNorm`, ... | kept |

A depthwise Conv2d (groups = in = out channels) with dk > 1 becomes `DepthwiseConv3d`, a Conv3d subclass with
the same parameters that runs as dk depthwise 2D convolutions where that is faster (cuDNN; CPU training).

(*) With `pool_depth`, a pool also shrinks the patch axis (same window and stride as along the height) while
the depth is at least its window, except pools marked ``keeps_depth = True`` (branches in parallel with
convolutions). Strided convolutions never stride along the patch axis.

`depth_kernel` (dk) is the kernel extent along the patch axis: an odd integer (padding dk // 2 keeps the
number of patches) or `"full"`, a kernel of extent 2N - 1 with padding N - 1, so every output patch sees all
N input patches and the depth stays N. The 3D kernel starts as the 2D kernel in its centre depth slice and
zeros elsewhere ("identity-like"): at initialisation g computes f on each patch, and the cross-patch weights are
learned. `depth_init` > 0 instead draws the off-centre taps from a normal distribution with `depth_init` times
the standard deviation of the centre slice (per layer); docs/models.md ("Training g") records that it did not
train measurably better.

With `depth_kernel=1` and no depth pooling g is f applied to every patch: `build_model` then runs f itself on
the patches folded into the batch (`voldefense.models.patchwise.Patchwise`), with no conversion, unless asked
for this Conv3d path with ``fold=False``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from voldefense.errors import ArgumentTypeError, ConfigError
from voldefense.models.layer_tables import KEEPS_DEPTH, KNOWN_CONTAINERS, NO_3D, PASSTHROUGH
from voldefense.models.layers import (
    DepthwiseConv3d,
    PatchFlatten,
)

logger = logging.getLogger(__name__)

DepthKernel = int | Literal["full"]

def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def check_depth_kernel(depth_kernel: object, num_patches: object) -> tuple[int, int]:
    """Validate `depth_kernel` / `num_patches`; return the depth kernel extent and its padding."""
    if depth_kernel == "full":
        if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
            raise ConfigError(
                "depth_kernel 'full' spans all patches, so it needs num_patches (the volume depth N, e.g. "
                f"Volumizer.num_patches(image_size)); got num_patches={num_patches!r}"
            )
        return 2 * num_patches - 1, num_patches - 1
    if (
        isinstance(depth_kernel, bool)
        or not isinstance(depth_kernel, int)
        or depth_kernel < 1
        or depth_kernel % 2 == 0
    ):
        raise ConfigError(
            f"depth_kernel must be a positive odd integer (1 keeps patches independent, 3 is the default) or "
            f"'full', not {depth_kernel!r}"
        )
    return depth_kernel, depth_kernel // 2


class DepthPool(nn.Module):
    """A 3D pool that also shrinks the patch axis while the depth is at least the pool's window.

    Below that (e.g. the 4 patches of a CIFAR image have been pooled to 1), it pools space only, so a deep
    network with `pool_depth=True` still runs on volumes of few patches.
    """

    def __init__(self, full: nn.Module, spatial_only: nn.Module, depth_window: int):
        super().__init__()
        self.full = full
        self.spatial_only = spatial_only
        self.depth_window = depth_window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.full(x) if x.shape[2] >= self.depth_window else self.spatial_only(x)


TO_3D = "voldefense_to_3d"
"""Method name of the layer protocol: a 2D layer class that defines ``voldefense_to_3d(self, context)`` converts
itself (returns its 3D twin; `ConversionContext` says how). See docs/plugins.md, "Converter rules"."""


@dataclass(frozen=True)
class ConversionContext:
    """What a converter rule needs: where the layer sits and how g's depth axis is treated.

    ``convert(child, name)`` converts a child module with every rule (for a rule that rebuilds a container).
    The rule returns a module mapping ``(B, C, N, h, w)`` features to the same layout (or, for the last layers,
    ``(B, N, K)``); it should copy the 2D layer's weights so g starts from f (docs/models.md, inflation).
    """

    path: str
    depth_kernel: int
    depth_padding: int
    pool_depth: bool
    convert: Callable[[nn.Module, str], nn.Module]


ConversionRule = Callable[[nn.Module, ConversionContext], nn.Module]


class _Converter:
    def __init__(
        self,
        depth_kernel: int,
        depth_padding: int,
        pool_depth: bool,
        rules: Mapping[type[nn.Module], ConversionRule] | None = None,
        depth_init: float = 0.0,
    ):
        self.depth_init = depth_init
        self.dk = depth_kernel
        self.pd = depth_padding
        self.pool_depth = pool_depth
        self.user_rules = dict(rules or {})
        # Exact types only: a subclass may override forward, and silently dropping that would be wrong.
        self.rules: dict[type[nn.Module], Callable[[nn.Module, str], nn.Module]] = {
            nn.Conv2d: self.conv,
            nn.BatchNorm2d: self.batchnorm,
            nn.InstanceNorm2d: self.instancenorm,
            nn.MaxPool2d: self.maxpool,
            nn.AvgPool2d: self.avgpool,
            nn.AdaptiveAvgPool2d: self.adaptive,
            nn.AdaptiveMaxPool2d: self.adaptive,
            nn.Dropout2d: self.dropout2d,
            nn.Flatten: self.flatten,
        }

    # -- per-layer rules ------------------------------------------------------------------------------------

    def conv(self, m: nn.Conv2d, path: str) -> nn.Module:
        kh, kw = _pair(m.kernel_size)
        if isinstance(m.padding, str):
            padding: str | tuple[int, int, int] = m.padding if m.padding == "same" else (self.pd, 0, 0)
        else:
            padding = (self.pd, *_pair(m.padding))
        # A depthwise kernel that spans patches gets the subclass that can run as 2D taps (fast on cuDNN);
        # same parameters and state dict as nn.Conv3d. A 1-deep one is plain Conv3d.
        depthwise = (
            m.groups == m.in_channels == m.out_channels
            and self.dk > 1
            and m.padding_mode == "zeros"
            and not isinstance(padding, str)
        )
        new = (DepthwiseConv3d if depthwise else nn.Conv3d)(
            m.in_channels,
            m.out_channels,
            (self.dk, kh, kw),
            stride=(1, *_pair(m.stride)),
            padding=padding,
            dilation=(1, *_pair(m.dilation)),
            groups=m.groups,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
            device=m.weight.device,
            dtype=m.weight.dtype,
        )
        with torch.no_grad():
            # Centre-slice initialisation: g starts as f on every patch (see the module docstring).
            new.weight.zero_()
            if self.depth_init > 0 and self.dk > 1:
                new.weight.normal_(0.0, self.depth_init * float(m.weight.std()))
            new.weight[:, :, self.dk // 2].copy_(m.weight)
            if m.bias is not None:
                new.bias.copy_(m.bias)
        return new

    def batchnorm(self, m: nn.BatchNorm2d, path: str) -> nn.Module:
        new = nn.BatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        new.load_state_dict(m.state_dict())
        return new.to(device=_device_of(m))

    def instancenorm(self, m: nn.InstanceNorm2d, path: str) -> nn.Module:
        new = nn.InstanceNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        new.load_state_dict(m.state_dict())
        return new.to(device=_device_of(m))

    def _pool(self, m: nn.Module, make: Callable[..., nn.Module], k, s, p, **kw) -> nn.Module:
        kh, kw_ = _pair(k)
        sh, sw = _pair(s if s is not None else k)
        ph, pw = _pair(p)
        spatial = make((1, kh, kw_), (1, sh, sw), (0, ph, pw), **kw)
        # A pool marked `keeps_depth` runs beside depth-preserving convolutions (an Inception branch), whose
        # outputs it is concatenated with: shrinking its depth alone would make the branches disagree.
        if not self.pool_depth or getattr(m, KEEPS_DEPTH, False):
            return spatial
        return DepthPool(make((kh, kh, kw_), (sh, sh, sw), (ph, ph, pw), **kw), spatial, kh)

    def maxpool(self, m: nn.MaxPool2d, path: str) -> nn.Module:
        if m.return_indices:
            raise ConfigError(
                f"cannot convert layer {path!r} (MaxPool2d with return_indices) to 3D: unpooling "
                "is not supported; use return_indices=False"
            )
        dh, dw = _pair(m.dilation)
        return self._pool(
            m,
            lambda k, s, p, **kw: nn.MaxPool3d(k, s, p, dilation=(1 if k[0] == 1 else dh, dh, dw), **kw),
            m.kernel_size,
            m.stride,
            m.padding,
            ceil_mode=m.ceil_mode,
        )

    def avgpool(self, m: nn.AvgPool2d, path: str) -> nn.Module:
        return self._pool(
            m,
            nn.AvgPool3d,
            m.kernel_size,
            m.stride,
            m.padding,
            ceil_mode=m.ceil_mode,
            count_include_pad=m.count_include_pad,
            divisor_override=m.divisor_override,
        )

    def adaptive(self, m: nn.Module, path: str) -> nn.Module:
        oh, ow = (m.output_size, m.output_size) if not isinstance(m.output_size, tuple) else m.output_size
        cls = nn.AdaptiveAvgPool3d if isinstance(m, nn.AdaptiveAvgPool2d) else nn.AdaptiveMaxPool3d
        if isinstance(m, nn.AdaptiveMaxPool2d) and m.return_indices:
            raise ConfigError(f"cannot convert layer {path!r} (AdaptiveMaxPool2d with return_indices) to 3D")
        # The patch axis is never pooled away here: the head needs one feature vector per patch.
        return cls((None, oh, ow))

    def dropout2d(self, m: nn.Dropout2d, path: str) -> nn.Module:
        return nn.Dropout3d(m.p, m.inplace)

    def flatten(self, m: nn.Flatten, path: str) -> nn.Module:
        if m.start_dim != 1 or m.end_dim != -1:
            raise ConfigError(
                f"cannot convert layer {path!r} (Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})) "
                "to 3D: "
                "only Flatten() over all feature axes has a per-patch counterpart"
            )
        return PatchFlatten()

    # -- walk -----------------------------------------------------------------------------------------------

    def _user_rule(self, module: nn.Module, path: str) -> nn.Module | None:
        """A rule given for this exact type, or the layer's own `voldefense_to_3d` method; None if neither."""
        rule = self.user_rules.get(type(module))
        if rule is None and callable(getattr(type(module), TO_3D, None)):
            rule = getattr(type(module), TO_3D)
        if rule is None:
            return None
        context = ConversionContext(
            path, self.dk, self.pd, self.pool_depth, lambda child, name: self.convert(child, _join(path, name))
        )
        new = rule(module, context)
        if not isinstance(new, nn.Module):
            raise ConfigError(
                f"the converter rule for layer {path or '<root>'!r} ({type(module).__name__}) returned a "
                f"{type(new).__name__}, not an nn.Module"
            )
        return new

    def convert(self, module: nn.Module, path: str) -> nn.Module:
        label = path or "<root>"
        custom = self._user_rule(module, path)
        if custom is not None:
            return custom
        rule = self.rules.get(type(module))
        if rule is not None:
            new = rule(module, path)
            new.train(module.training)
            return new
        if isinstance(module, NO_3D):
            raise ConfigError(
                f"cannot convert layer {label!r} ({type(module).__name__}) to 3D: it has no built-in volumetric "
                f"counterpart; {_REMEDY}"
            )
        for base in self.rules:
            if isinstance(module, base):
                raise ConfigError(
                    f"cannot convert layer {label!r} ({type(module).__name__}, a subclass of "
                    f"{base.__name__}) to 3D: its own forward may differ from {base.__name__}; use plain "
                    f"{base.__name__}"
                )
        if type(module) in PASSTHROUGH:
            return module
        children = list(module.named_children())
        own = [name for name, p in module.named_parameters(recurse=False) if p is not None]
        if own:
            raise ConfigError(
                f"cannot convert layer {label!r} ({type(module).__name__}) to 3D: it holds its own parameters "
                f"({', '.join(own)}) whose use in forward is unknown; build it from standard layers, or {_REMEDY}"
            )
        if not children and isinstance(module, KNOWN_CONTAINERS):
            return module  # an empty Sequential (an identity shortcut, as users often write it)
        if not children:
            # A parameter-free custom leaf (an activation, say): assume it is elementwise.
            logger.warning(
                "converting %s: keeping parameter-free layer %r (%s) as it is; it must work on 5D volumes",
                label,
                path,
                type(module).__name__,
            )
            return module
        if (
            not isinstance(module, KNOWN_CONTAINERS)
            and type(module).__module__.split(".")[0] != "voldefense"
        ):
            logger.debug(
                "converting %s: reusing the forward of %s; it must be dimension-agnostic",
                label,
                type(module).__name__,
            )
        for name, child in children:
            setattr(module, name, self.convert(child, _join(path, name)))
        return module


_REMEDY = (
    "register a converter rule for it (a voldefense_to_3d(self, context) method on the layer, or "
    "convert_to_3d(..., rules={LayerType: rule}); docs/plugins.md, 'Converter rules'), or use model.depth_kernel 1, "
    "which runs f on each patch without conversion"
)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _device_of(module: nn.Module) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


class Converted3d(nn.Module):
    """A converted network: volumes `(B, C, N, h, w)` → per-patch logits `(B, N', K)`.

    `net` holds the 3D layers and all parameters (its state dict is this module's, prefixed ``net.``).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        if volume.dim() != 5:
            raise ValueError(
                f"a 3D backbone expects volumes (B, C, N, h, w), got shape {tuple(volume.shape)}"
            )
        return self.net(volume)


def convert_to_3d(
    model: nn.Module,
    *,
    depth_kernel: DepthKernel = 3,
    pool_depth: bool = False,
    num_patches: int | None = None,
    rules: Mapping[type[nn.Module], ConversionRule] | None = None,
    depth_init: float = 0.0,
) -> Converted3d:
    """Convert a 2D image classifier (images → logits `(B, K)`) into a 3D one (volumes → logits `(B, N', K)`).

    The input model is not modified. A layer that cannot be converted raises a `ConfigError` naming its dotted
    path and type. `rules` maps exact layer types to converter rules ``rule(layer_2d, context) -> layer_3d``
    (`ConversionContext`); they, and a layer's own ``voldefense_to_3d`` method, take precedence over the built-in
    rules. `depth_init`: 0 (default) starts the off-centre depth taps of converted convolutions at zero (g = f on
    each patch); > 0 draws them with that multiple of each layer's centre-slice standard deviation.
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"convert_to_3d needs an nn.Module, got {type(model).__name__}")
    if not isinstance(pool_depth, bool):
        raise ConfigError(f"pool_depth must be true or false, not {pool_depth!r}")
    dk, pd = check_depth_kernel(depth_kernel, num_patches)
    if isinstance(depth_init, bool) or not isinstance(depth_init, int | float) or not 0 <= depth_init <= 10:
        raise ConfigError(f"depth_init must be a number in [0, 10] (0 = zero off-centre taps), not {depth_init!r}")
    converter = _Converter(dk, pd, pool_depth, rules, float(depth_init))
    return Converted3d(converter.convert(copy.deepcopy(model), ""))
