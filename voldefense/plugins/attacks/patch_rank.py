"""`patch_rank`: adaptive patch PGD that also attacks the volumizer's ranking (straddling placements, rank
steering through a differentiable surrogate of the ranking metric, or a per-image search over both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec


def build(
    *,
    strategy: str = "search",
    steps: int = 40,
    step_size: float = 0.1,
    rank_target: str | int = "first",
    rank_step: float = 0.01,
    rank_iters: int = 5,
    margin: float = 0.05,
    targets: Sequence[str | int] = ("first", "last"),
    search_steps: int = 5,
    init: str = "random",
    targeted: bool = False,
    target_class: int | None = None,
    batch_size: int = 64,
) -> Any:
    """See `voldefense.attacks.rank_steering.RankSteeringPatch`."""
    from voldefense.attacks.rank_steering import RankSteeringPatch

    return RankSteeringPatch(
        strategy=strategy,  # type: ignore[arg-type]
        steps=steps,
        step_size=step_size,
        rank_target=rank_target,  # type: ignore[arg-type]
        rank_step=rank_step,
        rank_iters=rank_iters,
        margin=margin,
        targets=targets,  # type: ignore[arg-type]
        search_steps=search_steps,
        init=init,  # type: ignore[arg-type]
        targeted=targeted,
        target_class=target_class,
        batch_size=batch_size,
    )


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="patch_rank",
        factory=build,
        description="adaptive patch PGD that also attacks the ranking: straddles patch borders and/or steers "
        "its patch's rank (metric surrogate), best per image",
        size_unit="area",
        white_box=True,
    )
