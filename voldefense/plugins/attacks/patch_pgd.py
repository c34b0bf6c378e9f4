"""`patch_pgd`: adaptive white-box PGD on the pixels of one patch region, through the whole pipeline."""

from __future__ import annotations

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, BudgetOption, lazy_factory


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="patch_pgd",
        factory=lazy_factory("voldefense.attacks.pgd:PatchPGD"),
        description="adaptive PGD inside a square patch region (random or searched location), per image",
        size_unit="area",
        white_box=True,
        # the location search spends its effort on candidate locations too: double them with the steps
        budget_options=("steps", BudgetOption("candidates", when=("location", "search"))),
    )
