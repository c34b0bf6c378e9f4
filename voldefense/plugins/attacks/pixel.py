"""`pixel`: ART's PixelAttack (untargeted N-pixel differential evolution) on the whole pipeline."""

from __future__ import annotations

from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec


def build(*, max_iter: int = 10, es: int = 1, verbose: bool = False) -> Any:
    """See `voldefense.attacks.pixels.ARTPixelAttack`; ART is imported only when the attack runs."""
    from voldefense.attacks.pixels import ARTPixelAttack

    return ARTPixelAttack(max_iter=max_iter, es=es, verbose=verbose)


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="pixel",
        factory=build,
        description="ART PixelAttack: untargeted N-pixel differential evolution (black-box, slow)",
        size_unit="pixels",
        white_box=False,
    )
