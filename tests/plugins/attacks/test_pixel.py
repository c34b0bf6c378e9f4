"""pixel: ART PixelAttack through VolumizedClassifier, tiny budgets (it is slow)."""

from __future__ import annotations

import pytest
import torch

from voldefense.attacks.regions import changed_pixels
from voldefense.errors import ConfigError
from voldefense.testing import make_toy_images


def test_spec(registry):
    spec = registry.get("attack", "pixel")
    assert spec.size_unit == "pixels" and not spec.white_box
    with pytest.raises(ConfigError):
        spec.build(max_iter=0)
    with pytest.raises(ConfigError):
        spec.build(es=2)


def test_budget_queries_and_mode(registry, trained):
    model, xt, yt = trained
    model.train()
    attack = registry.get("attack", "pixel").build(max_iter=2)
    result = attack.run(model, xt[:2], yt[:2], 3, seed=0)
    assert all(m.training for m in model.modules())
    model.eval()
    assert result.adversarial.shape == (2, 3, 32, 32)
    assert (changed_pixels(result.adversarial, xt[:2]) <= 3).all()
    # One clean prediction, then at least one DE generation (population ~400/3*3) per attacked image.
    assert (result.queries > 100).all()
    again = attack.run(model, xt[:2], yt[:2], 3, seed=0)
    assert torch.equal(result.adversarial, again.adversarial)


class _RedPixelDetector(torch.nn.Module):
    """Class 1 iff some pixel is much redder than green: a model one well-chosen pixel can fool."""

    def forward(self, x):
        score = (x[:, 0] - x[:, 1]).flatten(1).amax(1, keepdim=True) - 0.8
        # A third, never-chosen class: ART's PixelAttack refuses two-class models.
        return torch.cat([-score, score, torch.full_like(score, -50)], dim=1) * 10


def test_one_pixel_flips_a_model_one_pixel_can_fool(registry):
    model = _RedPixelDetector()
    x, _ = make_toy_images(3, seed=3)
    x = x * 0.5  # no pixel is red enough: every image is class 0
    y = torch.zeros(3, dtype=torch.long)
    assert (model(x).argmax(1) == 0).all()
    result = registry.get("attack", "pixel").build(max_iter=5).run(model, x, y, 1, seed=0)
    assert (model(result.adversarial).argmax(1) == 1).all()
    assert (changed_pixels(result.adversarial, x) == 1).all()
