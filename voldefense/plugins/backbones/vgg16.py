"""Backbone plugin `vgg16`: VGG16 (configuration D, optionally with batch norm) as f, converted generically to g."""

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
    dropout: float = 0.5,
    batch_norm: bool = False,
) -> Any:
    from voldefense.models.vgg import vgg16

    return vgg16(
        num_classes,
        width=width,
        stem=stem,
        in_channels=in_channels,
        mean=mean,
        std=std,
        dropout=dropout,
        batch_norm=batch_norm,
    )


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(name="vgg16", factory=build, description="VGG16 (configuration D; batch_norm=True for VGG16-BN)")
