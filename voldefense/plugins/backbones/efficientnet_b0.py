"""Backbone plugin `efficientnet_b0`: EfficientNet-B0 (depthwise convolutions, squeeze-excitation) as f."""

from __future__ import annotations

from collections.abc import Iterable

from voldefense.hookspecs import hookimpl
from voldefense.specs import BackboneSpec, lazy_factory


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(
        name="efficientnet_b0",
        factory=lazy_factory("voldefense.models.efficientnet:efficientnet_b0"),
        description="EfficientNet-B0 (MBConv, depthwise, squeeze-excitation)",
    )
