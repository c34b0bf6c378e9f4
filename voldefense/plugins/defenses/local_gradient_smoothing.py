"""Local gradient smoothing (Naseer et al., WACV 2019) in front of f, attacked naively and with BPDA."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec, lazy_factory


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="local_gradient_smoothing",
        factory=lazy_factory("voldefense.defenses.lgs:LocalGradientSmoothingDefense"),
        description="LGS in front of f (Naseer et al. 2019): damps high-gradient windows; views naive and bpda",
    )
