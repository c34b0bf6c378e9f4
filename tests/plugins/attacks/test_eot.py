"""Expectation over Transformation in the gradient attacks (sparse_pgd, patch_pgd, patch_rank): against a model
with randomness, each step averages the gradient over `eot_samples` fresh draws, and every draw is a query."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.attacks.pgd import PatchPGD, SparsePGD
from voldefense.errors import ConfigError


class NoisyLinear(nn.Module):
    """Two-class logits (0, w·x + s·v·x) with a fresh random sign s per forward pass: the expected input gradient
    is w, but a single draw's is w ± v, dominated by v's random sign. Records how often it was called."""

    def __init__(self, pixels: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(pixels, generator=g) * 0.1)
        self.v = nn.Parameter(torch.randn(pixels, generator=g) * 10.0)
        self.draws: list[float] = []
        self.images_seen = 0  # forward passes per image, summed: what the queries must add up to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = float(torch.randint(0, 2, ()).item() * 2 - 1)
        self.draws.append(s)
        self.images_seen += x.shape[0]
        flat = x.flatten(1)
        score = flat @ self.w + s * (flat @ self.v)
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.mark.parametrize("attack_class", [SparsePGD, PatchPGD])
def test_eot_averages_the_gradient_over_fresh_draws(attack_class):
    torch.manual_seed(0)
    model = NoisyLinear(3 * 4 * 4)
    attack = attack_class(eot_samples=64)
    x = torch.rand(2, 3, 4, 4)
    goal = torch.tensor([1, 1])
    _, grad = attack._gradient(model, x, goal)
    draws = torch.tensor(model.draws[-64:])
    assert len(model.draws) == 64 and draws.min() == -1 and draws.max() == 1  # fresh draws, both signs seen
    # per draw, d CE(class 1)/dx = -(1 - p1) (w + s v); the mean over the recorded draws is what EOT returns
    flat = x.flatten(1)
    expected = torch.zeros_like(flat)
    for s in draws:
        score = flat @ model.w + s * (flat @ model.v)
        p1 = torch.sigmoid(score)
        expected += (-(1 - p1)).unsqueeze(1) * (model.w + s * model.v).unsqueeze(0)
    torch.testing.assert_close(grad.flatten(1), (expected / 64).detach(), rtol=1e-4, atol=1e-6)


def test_each_draw_is_a_query_and_one_sample_is_the_plain_attack():
    torch.manual_seed(0)
    model = NoisyLinear(3 * 8 * 8)
    images, labels = torch.rand(3, 3, 8, 8), torch.tensor([0, 0, 0])
    eot = SparsePGD(steps=3, eot_samples=5).run(model, images, labels, 2, seed=0)
    assert model.images_seen == int(eot.queries.sum())
    assert all(int(q) % 5 == 0 for q in eot.queries)  # every step and the final check: 5 passes
    assert len(model.draws) % 5 == 0
    model.images_seen = 0
    plain = SparsePGD(steps=3).run(model, images, labels, 2, seed=0)
    assert model.images_seen == int(plain.queries.sum()) and int(plain.queries.max()) <= 4


class DroppedLinear(nn.Module):
    """Logits (0, 3 + w·(m ⊙ (x - 0.5)) / keep) with a fresh Bernoulli(keep) pixel mask m per forward pass: a
    random-dropout defense. One draw's gradient sees only the pixels that draw kept; the expected gradient is w."""

    def __init__(self, pixels: int, seed: int, keep: float = 0.1) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(pixels, generator=torch.Generator().manual_seed(seed)))
        self.keep = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mask = (torch.rand(flat.shape[1]) < self.keep).to(flat) / self.keep
        score = ((flat - 0.5) * mask) @ self.w + 3.0
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_eot_breaks_a_random_dropout_model_a_single_draw_does_not(seed):
    """Judged over 300 fresh draws (the model's expected prediction), a 4-pixel attack with 32-draw EOT fools
    every image; with single draws it fools none (measured: seed 0 is a tie, both succeed)."""
    model = DroppedLinear(3 * 8 * 8, seed)
    images, labels = torch.full((16, 3, 8, 8), 0.5), torch.ones(16, dtype=torch.long)

    def expected_accuracy(adversarial: torch.Tensor) -> float:
        torch.manual_seed(9)
        with torch.no_grad():
            p = torch.stack([torch.softmax(model(adversarial), 1)[:, 1] for _ in range(300)]).mean(0)
        return float((p > 0.5).float().mean())

    assert expected_accuracy(images) == 1.0
    found = {}
    for samples in (1, 32):
        torch.manual_seed(0)
        found[samples] = SparsePGD(steps=20, eot_samples=samples).run(model, images, labels, 4, seed=0).adversarial
    assert expected_accuracy(found[1]) == 1.0
    assert expected_accuracy(found[32]) == 0.0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_eot_samples_is_a_whole_number_of_at_least_one(bad):
    with pytest.raises(ConfigError, match="eot_samples"):
        SparsePGD(eot_samples=bad)


def test_patch_rank_takes_eot(registry):
    attack = registry.get("attack", "patch_rank").build(eot_samples=4)
    assert attack.eot_samples == 4
