"""`pixel_search_grad` plugin: `pixel_search` ranked by one gradient (`voldefense.attacks.pixel_search`)."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks() -> Iterator[AttackSpec]:
    yield AttackSpec(
        name="pixel_search_grad",
        factory=lazy_factory("voldefense.attacks.pixel_search:PixelSearchGradient"),
        description="pixel_search with the locations and corner colours ranked by one gradient of the margin "
        "instead of probes (white-box)",
        size_unit="pixels",
        white_box=True,
        budget_options=("max_queries",),
    )
