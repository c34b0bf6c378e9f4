"""Backbone plugin `resnet50`: ResNet50 with bottleneck blocks as f, converted generically to g."""

from __future__ import annotations

from collections.abc import Iterable

from voldefense.hookspecs import hookimpl
from voldefense.specs import BackboneSpec, lazy_factory


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(
        name="resnet50",
        factory=lazy_factory("voldefense.models.resnet:resnet50"),
        description="ResNet50 (bottleneck blocks)",
    )
