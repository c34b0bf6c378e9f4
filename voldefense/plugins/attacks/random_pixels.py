"""`random_pixels`: the paper's protocol, N random pixels in a random quadrant, several copies per image."""

from __future__ import annotations

from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec


def build(*, copies: int = 5) -> Any:
    """See `voldefense.attacks.pixels.RandomPixels`."""
    from voldefense.attacks.pixels import RandomPixels

    return RandomPixels(copies=copies)


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="random_pixels",
        factory=build,
        description="paper protocol: N random-valued pixels in a random quadrant, 5 copies averaged",
        size_unit="pixels",
        white_box=False,
    )
