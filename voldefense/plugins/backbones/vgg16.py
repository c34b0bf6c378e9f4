"""Backbone plugin `vgg16`: VGG16 (configuration D, optionally with batch norm) as f, converted generically to g."""

from __future__ import annotations

from collections.abc import Iterable

from voldefense.hookspecs import hookimpl
from voldefense.specs import BackboneSpec, lazy_factory


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(
        name="vgg16",
        factory=lazy_factory("voldefense.models.vgg:vgg16"),
        description="VGG16 (configuration D; batch_norm=True for VGG16-BN)",
    )
