"""random_pixels: the paper protocol (R copies, one quadrant, centre fallback), nested in N, exact counts."""

from __future__ import annotations

import pytest
import torch

from voldefense.attacks.regions import changed_pixels
from voldefense.errors import ConfigError
from voldefense.evaluation import evaluate_attack, summarize


def test_spec(registry):
    spec = registry.get("attack", "random_pixels")
    assert spec.size_unit == "pixels" and not spec.white_box
    with pytest.raises(ConfigError):
        spec.build(copies=0)


def test_copies_quadrants_and_counts(registry):
    images = torch.full((6, 3, 16, 16), 0.5)
    labels = torch.zeros(6, dtype=torch.long)
    result = (
        registry.get("attack", "random_pixels").build().run(torch.nn.Flatten(), images, labels, 10, seed=0)
    )
    adv = result.adversarial
    assert adv.shape == (5, 6, 3, 16, 16) and result.num_copies == 5
    assert result.extra["placement"] == "quadrant" and int(result.queries.sum()) == 0
    # Exactly N locations change (random values never equal 0.5 exactly), all inside one quadrant.
    assert (changed_pixels(adv, images) == 10).all()
    changed = (adv != images).any(2)  # (R, B, H, W)
    quads = torch.stack(
        [changed[..., :8, :8], changed[..., :8, 8:], changed[..., 8:, :8], changed[..., 8:, 8:]]
    )
    per_quad = quads.flatten(3).any(-1).sum(0)  # (R, B) number of quadrants touched
    assert (per_quad == 1).all()
    used = quads.flatten(3).any(-1).float().mean((1, 2))
    assert (used > 0).all()  # each quadrant is used somewhere


def test_centre_fallback_when_a_quadrant_is_too_small(registry):
    images = torch.full((2, 1, 16, 16), 0.5)
    result = (
        registry.get("attack", "random_pixels")
        .build(copies=2)
        .run(torch.nn.Flatten(), images, torch.zeros(2, dtype=torch.long), 100, seed=0)
    )
    assert result.extra["placement"] == "centre"
    changed = (result.adversarial != images).any(2)
    assert (changed.flatten(2).sum(-1) == 100).all()
    rows = changed.any(-1).nonzero()[:, -1]
    assert rows.min() >= 3 and rows.max() <= 12  # a centred 10x10 region


def test_nested_in_n_and_deterministic(registry):
    images = torch.rand(4, 3, 16, 16)
    labels = torch.zeros(4, dtype=torch.long)
    attack = registry.get("attack", "random_pixels").build()
    small = attack.run(torch.nn.Flatten(), images, labels, 5, seed=1).adversarial
    large = attack.run(torch.nn.Flatten(), images, labels, 20, seed=1).adversarial
    changed_small = (small != images).any(2, keepdim=True).expand_as(small)
    assert torch.equal(small[changed_small], large[changed_small])
    assert torch.equal(small, attack.run(torch.nn.Flatten(), images, labels, 5, seed=1).adversarial)
    assert not torch.equal(small, attack.run(torch.nn.Flatten(), images, labels, 5, seed=2).adversarial)


def test_accuracy_falls_with_n(registry, trained):
    model, xt, yt = trained
    attack = registry.get("attack", "random_pixels").build()
    sizes = (1, 16, 64, 256)  # all fit in a quadrant of a 32x32 image
    accs = [summarize(evaluate_attack(model, attack, xt, yt, n, seed=0)).attacked_accuracy for n in sizes]
    assert accs[0] > 0.9
    assert all(b <= a + 0.05 for a, b in zip(accs, accs[1:], strict=False)), accs
    assert accs[-1] < accs[0] - 0.3  # a quarter of the image randomised hurts the toy model
