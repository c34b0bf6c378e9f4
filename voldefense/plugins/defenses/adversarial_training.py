"""Adversarial training of f with random (optionally PGD-optimised) patches and random pixels."""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec, lazy_factory


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="adversarial_training",
        factory=lazy_factory("voldefense.defenses.adversarial:AdversarialTrainingDefense"),
        description="f trained on randomly patched / pixel-perturbed images (optionally PGD patches)",
    )
