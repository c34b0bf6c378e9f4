"""Blind digital watermarking (Hayes 2018): saliency mask and inpainting in front of f, naive and BPDA views."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec, lazy_factory


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="digital_watermarking",
        factory=lazy_factory("voldefense.defenses.watermarking:DigitalWatermarkingDefense"),
        description="blind DW in front of f (Hayes 2018): mask dense saliency, inpaint; views naive and bpda",
    )
