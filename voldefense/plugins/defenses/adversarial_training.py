"""Adversarial training of f with random (optionally PGD-optimised) patches and random pixels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from voldefense.hookspecs import hookimpl
from voldefense.specs import DefenseSpec

if TYPE_CHECKING:
    from voldefense.defenses.adversarial import AdversarialTrainingDefense


def build(
    perturbation: Literal["patch", "pixels", "both"] = "both",
    patch_area: float = 0.05,
    num_pixels: int = 10,
    fraction: float = 0.5,
    pgd_steps: int = 0,
    pgd_step_size: float = 0.1,
) -> AdversarialTrainingDefense:
    """``perturbation``: what perturbed training images get; ``patch_area``: patch size as a fraction of the
    image; ``num_pixels``: pixels changed; ``fraction``: share of each batch perturbed; ``pgd_steps``: signed
    gradient steps optimising the patch (0 = random noise patch)."""
    from voldefense.defenses.adversarial import AdversarialTrainingDefense  # torch: imported when built only

    return AdversarialTrainingDefense(
        perturbation=perturbation,
        patch_area=patch_area,
        num_pixels=num_pixels,
        fraction=fraction,
        pgd_steps=pgd_steps,
        pgd_step_size=pgd_step_size,
    )


@hookimpl
def voldefense_defenses() -> Iterator[DefenseSpec]:
    yield DefenseSpec(
        name="adversarial_training",
        factory=build,
        description="f trained on randomly patched / pixel-perturbed images (optionally PGD patches)",
    )
