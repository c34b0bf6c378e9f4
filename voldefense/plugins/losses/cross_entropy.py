"""Loss plugin `cross_entropy`: mean cross-entropy on image logits (B, K), the loss of the undefended f."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import LossSpec


def build(label_smoothing: float = 0.0) -> Any:
    from voldefense.models.losses import CrossEntropyLoss

    return CrossEntropyLoss(label_smoothing=label_smoothing)


@hookimpl
def voldefense_losses() -> Iterable[LossSpec]:
    yield LossSpec(
        name="cross_entropy", factory=build, description="cross-entropy on image logits", target="image"
    )
