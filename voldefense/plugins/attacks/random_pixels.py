"""`random_pixels`: the paper's protocol, N random pixels in a random quadrant, several copies per image."""

from __future__ import annotations

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="random_pixels",
        factory=lazy_factory("voldefense.attacks.pixels:RandomPixels"),
        description="paper protocol: N random-valued pixels in a random quadrant, 5 copies averaged",
        size_unit="pixels",
        white_box=False,
        adaptive=False,  # a fixed random protocol: it never looks at the model's outputs to choose pixels
    )
