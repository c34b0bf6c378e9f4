"""Loss plugin `cross_entropy`: mean cross-entropy on image logits (B, K), the loss of the undefended f."""

from __future__ import annotations

from collections.abc import Iterable

from voldefense.hookspecs import hookimpl
from voldefense.specs import LossSpec, lazy_factory


@hookimpl
def voldefense_losses() -> Iterable[LossSpec]:
    yield LossSpec(
        name="cross_entropy",
        factory=lazy_factory("voldefense.models.losses:CrossEntropyLoss"),
        description="cross-entropy on image logits",
        target="image",
    )
