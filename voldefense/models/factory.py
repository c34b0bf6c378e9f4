"""`build_model`: the one way to build a backbone, 2D (the undefended f) or 3D (the defended g's network).

Example::

    f = build_model("resnet50", dims=2, num_classes=10, width=0.25)  # (B, 3, 32, 32) -> (B, 10)
    g = build_model("resnet50", dims=3, num_classes=10, width=0.25)  # (B, 3, 4, 16, 16) -> (B, 4, 10)

Options are split: ``depth_kernel``, ``pool_depth``, ``num_patches`` and ``fold`` shape g (and are ignored for
``dims=2``, so one options mapping builds both f and g); every other option goes to the architecture's factory
(``width``, ``stem``, ``in_channels``, ``mean``, ``std``, ...). An option neither accepts is a `ConfigError`
naming it.

With ``depth_kernel=1`` and ``pool_depth=False``, g is f applied to each patch alone: it is built as
`Patchwise(f)` — the patches folded into the batch, f run as it is, no conversion — so any 2D classifier works
(LayerNorm, attention, ...). ``fold`` chooses: ``"auto"`` (default) and ``True`` take that path (``True``
insists: any other depth kernel or depth pooling is a `ConfigError`), ``False`` converts f's layers to the
Conv3d network instead. Every other g comes from the backbone's 2D→3D converter, passed ``depth_kernel``,
``pool_depth`` and ``num_patches``.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from voldefense.errors import ConfigError
from voldefense.models.user import build_user_model, is_import_path
from voldefense.registry import get_registry
from voldefense.specs import BackboneSpec, build_with_options

CONVERTER_OPTIONS = ("depth_kernel", "pool_depth", "num_patches", "fold", "depth_init")


def build_model(
    name: str | BackboneSpec, dims: int = 2, num_classes: int = 10, *, registry: Any = None, **options: Any
) -> nn.Module:
    """Build backbone `name` (a `BackboneSpec`, or a name looked up in `registry`, the process-wide registry when
    none is given): f for ``dims=2``, its 3D counterpart for ``dims=3``.

    `name` may also be an import path ``"package.module:function"`` of a user's own 2D model (see
    `voldefense.models.user`); its options are the function's arguments, and g is f run on each patch (depth
    kernel 1) or its generic conversion.

    A 2D model maps images `(B, C, H, W)` in [0, 1] to logits `(B, K)`; a 3D model maps volumes
    `(B, C, N, h, w)` to per-patch logits `(B, N', K)` (N' = N unless ``pool_depth``).
    """
    if isinstance(dims, bool) or dims not in (2, 3):
        raise ConfigError(
            f"dims must be 2 (the undefended model f) or 3 (the volumetric model g), not {dims!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, not {num_classes!r}")
    converter_options = {key: options.pop(key) for key in CONVERTER_OPTIONS if key in options}
    if isinstance(name, str) and is_import_path(name):
        # A user's own model ("package.module:function"): no plugin package needed, the generic converter.
        in_channels = options.pop("in_channels", 3)
        model = build_user_model(name, options, num_classes=num_classes, in_channels=in_channels)
        converter: Any = None
    else:
        if isinstance(name, BackboneSpec):
            spec = name
        else:
            spec = (registry if registry is not None else get_registry()).get("backbone", name)
        name = spec.name
        model = build_with_options(spec.factory, options, what=f"backbone {name!r}", num_classes=num_classes)
        converter = spec.converter
    if dims == 2:
        return model
    if _runs_per_patch(converter_options):
        from voldefense.models.patchwise import Patchwise

        return Patchwise(model)
    converter_options.pop("fold", None)
    if converter is None:
        from voldefense.models.convert import convert_to_3d

        converter = convert_to_3d
    return build_with_options(
        functools.partial(converter, model), converter_options, what=f"the 3D converter of backbone {name!r}"
    )


def _runs_per_patch(options: dict[str, Any]) -> bool:
    """Whether g is f on each patch (no conversion): depth kernel 1, no depth pooling, `fold` not false."""
    fold = options.get("fold", "auto")
    if not (fold is True or fold is False or fold == "auto"):
        raise ConfigError(f"fold must be true, false or 'auto', not {fold!r}")
    depth_kernel = options.get("depth_kernel")
    per_patch = (
        type(depth_kernel) is int and depth_kernel == 1 and options.get("pool_depth", False) is False
    )
    if fold is True and not per_patch:
        raise ConfigError(
            "fold=True runs f on each patch, which needs depth_kernel=1 and pool_depth=false (got "
            f"depth_kernel={depth_kernel!r}, pool_depth={options.get('pool_depth', False)!r}); use fold='auto'"
        )
    return per_patch and fold is not False
