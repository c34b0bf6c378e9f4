"""PatchCleanser (Xiang et al., USENIX Security 2022): double masking around f, certified per patch area."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec, lazy_factory


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="patch_cleanser",
        factory=lazy_factory("voldefense.defenses.cleanser:PatchCleanserDefense"),
        description="double masking around f (Xiang et al. 2022); certified accuracy for its patch area",
    )
