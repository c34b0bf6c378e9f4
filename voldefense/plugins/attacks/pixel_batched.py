"""`pixel_batched` plugin: batched N-pixel differential evolution (`voldefense.attacks.pixel_batched`)."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks() -> Iterator[AttackSpec]:
    yield AttackSpec(
        name="pixel_batched",
        factory=lazy_factory("voldefense.attacks.pixel_batched:PixelBatchedAttack"),
        description="N-pixel differential evolution (Su et al., as ART's PixelAttack) batched over images "
        "in torch, fixed query budget, early stop per image",
        size_unit="pixels",
        white_box=False,
        budget_options=("max_queries",),
    )
