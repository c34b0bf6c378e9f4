"""(De)randomized smoothing for patches (Levine & Feizi 2020, ART ``levine2020``): certified baseline."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec, lazy_factory


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="derandomized_smoothing",
        factory=lazy_factory("voldefense.defenses.ablation:DerandomizedSmoothingDefense"),
        description="column/block ablation voting (Levine & Feizi 2020); certified accuracy per patch size",
    )
