"""`sparse_pgd`: adaptive white-box N-pixel attack, PGD with an exact L0 (pixel-location) projection."""

from __future__ import annotations

from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec


def build(
    *,
    steps: int = 50,
    step_size: float = 1.0,
    restarts: int = 1,
    targeted: bool = False,
    target_class: int | None = None,
    batch_size: int = 64,
) -> Any:
    """See `voldefense.attacks.pgd.SparsePGD`."""
    from voldefense.attacks.pgd import SparsePGD

    return SparsePGD(
        steps=steps,
        step_size=step_size,
        restarts=restarts,
        targeted=targeted,
        target_class=target_class,
        batch_size=batch_size,
    )


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="sparse_pgd",
        factory=build,
        description="adaptive white-box N-pixel attack: PGD projected onto at most N changed pixel locations",
        size_unit="pixels",
        white_box=True,
    )
