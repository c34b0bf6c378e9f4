"""Loss plugin `pal`: the Patch Aggregate Loss (paper eq. 10) on per-patch logits (B, N, K), for g."""

from __future__ import annotations

from collections.abc import Iterable

from voldefense.hookspecs import hookimpl
from voldefense.specs import LossSpec, lazy_factory


@hookimpl
def voldefense_losses() -> Iterable[LossSpec]:
    yield LossSpec(
        name="pal",
        factory=lazy_factory("voldefense.models.losses:PatchAggregateLoss"),
        description="Patch Aggregate Loss: per-patch cross-entropy, mean over patches (sum: option) and batch",
        target="patch",
    )
