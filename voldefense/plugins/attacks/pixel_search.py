"""`pixel_search` plugin: query-efficient black-box N-pixel attack (`voldefense.attacks.pixel_search`)."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, lazy_factory


@hookimpl
def voldefense_attacks() -> Iterator[AttackSpec]:
    yield AttackSpec(
        name="pixel_search",
        factory=lazy_factory("voldefense.attacks.pixel_search:PixelSearch"),
        description="query-efficient N-pixel attack: block probes and a pixel sweep rank the locations, "
        "corner colours first, Sparse-RS-style search for N > 1, early stop per image (black-box)",
        size_unit="pixels",
        white_box=False,
        budget_options=("max_queries",),
    )
