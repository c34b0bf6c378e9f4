"""`pixel`: ART's PixelAttack (untargeted N-pixel differential evolution) on the whole pipeline."""

from __future__ import annotations

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="pixel",
        factory=lazy_factory("voldefense.attacks.pixels:ARTPixelAttack"),
        description="ART PixelAttack: untargeted N-pixel differential evolution (black-box, slow)",
        size_unit="pixels",
        white_box=False,
        budget_options=("max_iter",),
    )
