"""`pixel_exhaustive` plugin: exact one-pixel search (`voldefense.attacks.pixel_exhaustive`)."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks() -> Iterator[AttackSpec]:
    yield AttackSpec(
        name="pixel_exhaustive",
        factory=lazy_factory("voldefense.attacks.pixel_exhaustive:PixelExhaustiveAttack"),
        description="every pixel x every colour-cube corner (8,192 candidates on CIFAR): exact one-pixel "
        "robustness over that colour set; size 1 only",
        size_unit="pixels",
        white_box=False,
        exact=True,  # every pixel x every colour-cube corner: nothing left to find with more budget
        # 8 x H x W queries per image: refuse images over CIFAR size up front (the attack's max_pixels default)
        max_image_pixels=32 * 32,
    )
