"""Backbone plugin `inception_v3`: InceptionV3 as f, converted generically to g."""

from __future__ import annotations

from collections.abc import Iterable

from voldefense.hookspecs import hookimpl
from voldefense.specs import BackboneSpec, lazy_factory


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(
        name="inception_v3",
        factory=lazy_factory("voldefense.models.inception:inception_v3"),
        description="InceptionV3 (optional auxiliary classifier)",
    )
