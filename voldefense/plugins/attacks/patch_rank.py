"""`patch_rank`: adaptive patch PGD that also attacks the volumizer's ranking (straddling placements, rank
steering through a differentiable surrogate of the ranking metric, or a per-image search over both)."""

from __future__ import annotations

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="patch_rank",
        factory=lazy_factory("voldefense.attacks.rank_steering:RankSteeringPatch"),
        description="adaptive patch PGD that also attacks the ranking: straddles patch borders and/or steers "
        "its patch's rank (metric surrogate), best per image",
        size_unit="area",
        white_box=True,
        budget_options=("steps",),
    )
