"""Backbone plugin `efficientnet_b0`: EfficientNet-B0 (depthwise convolutions, squeeze-excitation) as f."""

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
    dropout: float = 0.2,
    stochastic_depth: float = 0.2,
) -> Any:
    from voldefense.models.efficientnet import efficientnet_b0

    return efficientnet_b0(
        num_classes,
        width=width,
        stem=stem,
        in_channels=in_channels,
        mean=mean,
        std=std,
        dropout=dropout,
        stochastic_depth=stochastic_depth,
    )


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(
        name="efficientnet_b0",
        factory=build,
        description="EfficientNet-B0 (MBConv, depthwise, squeeze-excitation)",
    )
