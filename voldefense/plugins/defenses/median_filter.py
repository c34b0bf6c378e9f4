"""Median filtering in front of f (ART's `SpatialSmoothing`), attacked naively and with BPDA."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec, lazy_factory


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="median_filter",
        factory=lazy_factory("voldefense.defenses.median:MedianFilterDefense"),
        description="median filter in front of f (ART SpatialSmoothing); attack views naive and bpda",
    )
