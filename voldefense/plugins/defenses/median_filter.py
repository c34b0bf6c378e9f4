"""Median filtering in front of f (ART's `SpatialSmoothing`), attacked naively and with BPDA."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec

if TYPE_CHECKING:
    from voldefense.defenses.median import MedianFilterDefense


def build(window: int = 3, train_on_filtered: bool = False) -> MedianFilterDefense:
    """``window``: side of the median window (ART's ``window_size``); ``train_on_filtered``: train a fresh f
    on filtered images instead of putting the filter in front of the run's f."""
    from voldefense.defenses.median import MedianFilterDefense  # torch: imported when built only

    return MedianFilterDefense(window=window, train_on_filtered=train_on_filtered)


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="median_filter",
        factory=build,
        description="median filter in front of f (ART SpatialSmoothing); attack views naive and bpda",
    )
