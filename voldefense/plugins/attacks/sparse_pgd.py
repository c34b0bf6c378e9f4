"""`sparse_pgd`: adaptive white-box N-pixel attack, PGD with an exact L0 (pixel-location) projection."""

from __future__ import annotations

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="sparse_pgd",
        factory=lazy_factory("voldefense.attacks.pgd:SparsePGD"),
        description="adaptive white-box N-pixel attack: PGD projected onto at most N changed pixel locations",
        size_unit="pixels",
        white_box=True,
        budget_options=("steps",),
    )
