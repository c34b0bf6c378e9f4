"""Backbone plugin `resnet50`: ResNet50 with bottleneck blocks as f, converted generically to g."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import BackboneSpec


def build(
    num_classes: int = 10,
    *,
    width: float = 1.0,
    stem: str = "small",
    in_channels: int = 3,
    mean: float | Sequence[float] | None = 0.5,
    std: float | Sequence[float] | None = 0.25,
) -> Any:
    from voldefense.models.resnet import resnet50

    return resnet50(num_classes, width=width, stem=stem, in_channels=in_channels, mean=mean, std=std)


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(name="resnet50", factory=build, description="ResNet50 (bottleneck blocks)")
