"""Loss plugin `pal`: the Patch Aggregate Loss (paper eq. 10) on per-patch logits (B, N, K), for g."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import LossSpec


def build(label_smoothing: float = 0.0, patch_reduction: str = "sum") -> Any:
    from voldefense.models.losses import PatchAggregateLoss

    return PatchAggregateLoss(label_smoothing=label_smoothing, patch_reduction=patch_reduction)  # type: ignore[arg-type]


@hookimpl
def voldefense_losses() -> Iterable[LossSpec]:
    yield LossSpec(
        name="pal",
        factory=build,
        description="Patch Aggregate Loss: sum over patches of per-patch cross-entropy, mean over the batch",
        target="patch",
    )
