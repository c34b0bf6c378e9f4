"""Initialise g's 3D network from f's trained 2D weights by *inflation* (Carreira & Zisserman's I3D, 2017).

The 2D→3D converter keeps every parameter at f's module path, so each tensor of g has a twin in f's state dict
(g's names carry a fixed prefix, e.g. ``net.``). Tensors of equal shape — biases, batch-norm weights and running
statistics, and the classifier, which becomes the per-patch head unchanged — are copied. A convolution kernel
``(out, in, kh, kw)`` becomes ``(out, in, dk, kh, kw)`` by one of two rules:

- ``"centre"`` (the default): the 2D kernel in the centre depth slice, zeros elsewhere. Each patch's output
  then depends on that patch alone, so the inflated, not yet fine-tuned g computes *exactly f on every patch*,
  whatever the depth kernel; fine-tuning with the Patch Aggregate Loss then learns the cross-patch weights from
  zero. This is also how the converter initialises a g trained from scratch.
- ``"spread"``: the 2D kernel divided by dk in every depth slice (I3D's rule). I3D chose it because its depth
  axis is *time*: on a video of one repeated frame the inflated network then equals the 2D one. Here the depth
  axis holds *different* patches of the image, so spreading sums dk unrelated patches' responses and g no
  longer starts as f on each patch; it is offered for comparison, not recommended.

With ``depth_kernel: 1`` both rules are the same exact copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import torch
from torch import nn

from voldefense.errors import ConfigError, UsageError

InflationRule = Literal["centre", "spread"]
INFLATION_RULES: tuple[str, ...] = get_args(InflationRule)


def _prefix(names_3d: list[str], names_2d: set[str]) -> str:
    """The prefix that turns f's names into g's (``"net."`` for `Converted3d`), found from the tensors."""
    candidates = set()
    for name in names_3d:
        for name_2d in names_2d:
            if name == name_2d or name.endswith("." + name_2d):
                candidates.add(name[: len(name) - len(name_2d)])
    for prefix in sorted(candidates, key=len):
        if {n[len(prefix) :] for n in names_3d if n.startswith(prefix)} == names_2d:
            return prefix
    raise ConfigError(
        "training.g_init: f's weights do not match g's network tensor for tensor (g has e.g. "
        f"{', '.join(sorted(names_3d)[:3])}; f has e.g. {', '.join(sorted(names_2d)[:3])}); g must be the "
        "conversion of f's architecture (same model and model.options)"
    )


def inflate_tensor(weight_2d: torch.Tensor, shape_3d: torch.Size, rule: InflationRule = "centre") -> torch.Tensor:
    """One tensor of g from its twin in f: a copy when the shapes agree, else a kernel inflated along depth."""
    if tuple(weight_2d.shape) == tuple(shape_3d):
        return weight_2d.clone()
    inflatable = (
        weight_2d.dim() == 4
        and len(shape_3d) == 5
        and tuple(shape_3d[:2]) == tuple(weight_2d.shape[:2])
        and tuple(shape_3d[3:]) == tuple(weight_2d.shape[2:])
    )
    if not inflatable:
        raise ConfigError(
            f"training.g_init: cannot inflate a tensor of shape {tuple(weight_2d.shape)} to {tuple(shape_3d)}"
        )
    depth = int(shape_3d[2])
    if rule == "centre":
        out = weight_2d.new_zeros(shape_3d)
        out[:, :, depth // 2] = weight_2d
        return out
    return (weight_2d / depth).unsqueeze(2).expand(shape_3d).clone()


def inflate_state_dict(
    state_2d: Mapping[str, torch.Tensor], backbone_3d: nn.Module, rule: InflationRule = "centre"
) -> dict[str, torch.Tensor]:
    """g's state dict built from f's (`state_2d`) for the 3D network `backbone_3d` (its names and shapes)."""
    if rule not in INFLATION_RULES:
        raise UsageError(f"inflation rule must be one of {', '.join(INFLATION_RULES)}, not {rule!r}")
    target = backbone_3d.state_dict()
    prefix = _prefix(list(target), set(state_2d))
    out = {}
    for name, tensor in target.items():
        source = state_2d[name[len(prefix) :]]
        out[name] = inflate_tensor(source, tensor.shape, rule).to(dtype=tensor.dtype, device=tensor.device)
    return out


def inflate_into(
    backbone_3d: nn.Module, source: nn.Module | Mapping[str, torch.Tensor], rule: InflationRule = "centre"
) -> nn.Module:
    """Overwrite g's 3D network with f's weights inflated (f as a module or its state dict); returns it."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    backbone_3d.load_state_dict(inflate_state_dict(state, backbone_3d, rule), strict=True)
    return backbone_3d
