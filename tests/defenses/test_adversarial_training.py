"""Adversarial training: the per-batch perturbations and the fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.defenses.adversarial import (
    AdversarialTrainingDefense,
    random_pixel_masks,
    random_square_masks,
)
from voldefense.defenses.base import TrainBudget
from voldefense.errors import ConfigError
from voldefense.testing import accuracy, make_toy_images, tiny_cnn


def test_masks_have_the_right_size() -> None:
    g = torch.Generator().manual_seed(0)
    squares = random_square_masks(20, 5, (16, 12), g)
    assert squares.shape == (20, 1, 16, 12) and (squares.sum((1, 2, 3)) == 25).all()
    pixels = random_pixel_masks(20, 7, (16, 12), g)
    assert (pixels.sum((1, 2, 3)) == 7).all()


@pytest.mark.parametrize("perturbation", ["patch", "pixels", "both"])
def test_perturb_changes_only_the_budgeted_region(perturbation) -> None:
    x = torch.full((64, 3, 16, 16), 0.5)
    defense = AdversarialTrainingDefense(
        perturbation=perturbation, patch_area=0.1, num_pixels=5, fraction=0.5
    )
    out = defense.perturb(tiny_cnn(4), x, torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(1))
    changed = (out != x).any(1).sum((1, 2))  # pixels changed per image
    side = defense._patch_side(16, 16)
    assert 0 < int((changed > 0).sum()) < 64  # about half the batch
    assert (changed <= max(side * side, 5)).all()
    if perturbation == "pixels":
        assert (changed <= 5).all()
    same = defense.perturb(
        tiny_cnn(4), x, torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(1)
    )
    assert torch.equal(out, same)  # deterministic given the generator


def test_pgd_patch_raises_the_loss() -> None:
    x, y = make_toy_images(64, image_size=16, seed=0)
    model = tiny_cnn(4)
    from voldefense.testing import fit

    fit(model, x, y, epochs=8, lr=1e-2)
    losses = {}
    for steps in (0, 5):
        defense = AdversarialTrainingDefense(
            perturbation="patch", patch_area=0.15, fraction=1.0, pgd_steps=steps
        )
        adv = defense.perturb(model, x, y, torch.Generator().manual_seed(0))
        with torch.no_grad():
            losses[steps] = float(nn.functional.cross_entropy(model(adv), y))
    assert losses[5] > losses[0]
    assert not model.training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"perturbation": "blur"}, "perturbation"),
        ({"patch_area": 0.0}, "patch_area"),
        ({"num_pixels": 0}, "num_pixels"),
        ({"fraction": 1.5}, "fraction"),
        ({"pgd_steps": -1}, "pgd_steps"),
    ],
)
def test_bad_options(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        AdversarialTrainingDefense(**kwargs)


def test_fit_trains_a_fresh_model() -> None:
    x, y = make_toy_images(192, image_size=16, seed=0)
    f = tiny_cnn(4)
    defended = AdversarialTrainingDefense(pgd_steps=1).fit(
        lambda c: tiny_cnn(4, in_channels=c),
        x,
        y,
        TrainBudget(epochs=10, batch_size=32, lr=1e-2),
        base_model=f,
    )
    assert defended.model is not f and defended.view_names == ("standard",)
    assert accuracy(defended.model, x, y) > 0.7
