"""(De)randomized smoothing for patches (Levine & Feizi 2020, ART ``levine2020``): certified baseline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec

if TYPE_CHECKING:
    from voldefense.defenses.ablation import DerandomizedSmoothingDefense


def build(
    ablation_type: Literal["column", "row", "block"] = "column",
    ablation_size: int = 4,
    threshold: float = 0.3,
    max_batch: int = 2048,
) -> DerandomizedSmoothingDefense:
    """``ablation_type``/``ablation_size``: the retained band or block; ``threshold``: softmax probability a
    position needs to vote for a class; ``max_batch``: ablated images per base-model call (memory knob)."""
    from voldefense.defenses.ablation import DerandomizedSmoothingDefense  # torch: imported when built only

    return DerandomizedSmoothingDefense(
        ablation_type=ablation_type, ablation_size=ablation_size, threshold=threshold, max_batch=max_batch
    )


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="derandomized_smoothing",
        factory=build,
        description="column/block ablation voting (Levine & Feizi 2020); certified accuracy per patch size",
    )
