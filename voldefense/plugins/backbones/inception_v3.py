"""Backbone plugin `inception_v3`: InceptionV3 as f, converted generically to g."""

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
    aux_logits: bool = False,
) -> Any:
    from voldefense.models.inception import inception_v3

    return inception_v3(
        num_classes,
        width=width,
        stem=stem,
        in_channels=in_channels,
        mean=mean,
        std=std,
        dropout=dropout,
        aux_logits=aux_logits,
    )


@hookimpl
def voldefense_backbones() -> Iterable[BackboneSpec]:
    yield BackboneSpec(
        name="inception_v3", factory=build, description="InceptionV3 (optional auxiliary classifier)"
    )
