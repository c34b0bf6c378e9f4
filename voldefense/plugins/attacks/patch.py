"""`patch`: a targeted universal adversarial patch (Brown et al.), transfer or adaptive, at random
locations."""

from __future__ import annotations

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="patch",
        factory=lazy_factory("voldefense.attacks.patch:UniversalPatch"),
        description="universal targeted patch (Brown et al.) from a source model, pasted at random spots",
        size_unit="area",
        white_box=True,
        budget_options=("iterations",),
        needs_source_model=True,  # with source: transfer (the paper's setting) the patch is trained on f
    )
