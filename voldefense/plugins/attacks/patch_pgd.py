"""`patch_pgd`: adaptive white-box PGD on the pixels of one patch region, through the whole pipeline."""

from __future__ import annotations

from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec


def build(
    *,
    steps: int = 40,
    step_size: float = 0.1,
    location: str = "random",
    candidates: int = 4,
    search_steps: int = 5,
    init: str = "random",
    targeted: bool = False,
    target_class: int | None = None,
    batch_size: int = 64,
) -> Any:
    """See `voldefense.attacks.pgd.PatchPGD`."""
    from voldefense.attacks.pgd import PatchPGD

    return PatchPGD(
        steps=steps,
        step_size=step_size,
        location=location,
        candidates=candidates,
        search_steps=search_steps,
        init=init,
        targeted=targeted,
        target_class=target_class,
        batch_size=batch_size,
    )


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="patch_pgd",
        factory=build,
        description="adaptive PGD inside a square patch region (random or searched location), per image",
        size_unit="area",
        white_box=True,
    )
