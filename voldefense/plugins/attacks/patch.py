"""`patch`: a targeted universal adversarial patch (Brown et al.), transfer or adaptive, at random
locations."""

from __future__ import annotations

from typing import Any

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec


def build(
    *,
    source: str = "adaptive",
    source_model: Any = None,
    target_class: int = 0,
    iterations: int = 100,
    learning_rate: float = 0.05,
    batch_size: int = 32,
    copies: int = 1,
    backend: str = "auto",
) -> Any:
    """See `voldefense.attacks.patch.UniversalPatch`; ART/torchvision are imported only when training."""
    from voldefense.attacks.patch import UniversalPatch

    return UniversalPatch(
        source=source,
        source_model=source_model,
        target_class=target_class,
        iterations=iterations,
        learning_rate=learning_rate,
        batch_size=batch_size,
        copies=copies,
        backend=backend,
    )


@hookimpl
def voldefense_attacks():
    yield AttackSpec(
        name="patch",
        factory=build,
        description="universal targeted patch (Brown et al.) from a source model, pasted at random spots",
        size_unit="area",
        white_box=True,
    )
