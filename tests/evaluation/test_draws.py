"""Models with randomness are classified over `evaluation.draws` draws: attacked accuracy averages the draws, an
image counts as correct or robust only if every draw is; deterministic models are classified once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense import DefendedClassifier, Volumizer, build_model
from voldefense.attacks.pixels import RandomPixels
from voldefense.errors import ConfigError
from voldefense.evaluation import evaluate_attack, is_stochastic
from voldefense.run.grid import clean_pass


class CoinFlip(nn.Module):
    """Right on image i with probability p_i, independently per forward pass; declares its randomness."""

    stochastic = True

    def __init__(self, p: list[float]) -> None:
        super().__init__()
        self.p = torch.tensor(p)
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        right = torch.rand(x.shape[0]) < self.p[: x.shape[0]]
        logits = torch.zeros(x.shape[0], 2)
        logits[torch.arange(x.shape[0]), (~right).long()] = 1.0  # label 0 when right
        return logits


def test_draws_repeat_the_classification_and_a_robust_image_survives_every_draw():
    torch.manual_seed(0)
    model = CoinFlip([1.0, 0.0, 0.5, 0.5])
    images, labels = torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    one = evaluate_attack(model, RandomPixels(copies=1), images, labels, 1)
    many = evaluate_attack(model, RandomPixels(copies=1), images, labels, 1, draws=20)
    assert one.num_copies == 1 and many.num_copies == 20
    # always right survives; never right does not; a coin survives 40 flips (20 clean + 20 attacked) ~never
    assert many.survived() == (True, False, False, False)
    assert 0.35 < many.summary().attacked_accuracy < 0.65  # (1 + 0 + 0.5 + 0.5) / 4 = 0.5 in expectation


def test_draws_must_be_a_whole_number_of_at_least_one():
    with pytest.raises(ConfigError, match="draws"):
        images, labels = torch.rand(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)
        evaluate_attack(CoinFlip([1.0]), RandomPixels(copies=1), images, labels, 1, draws=0)


def test_clean_accuracy_of_a_random_model_is_its_mean_over_draws():
    torch.manual_seed(0)
    model = CoinFlip([0.5] * 200)
    images, labels = torch.rand(200, 3, 4, 4), torch.zeros(200, dtype=torch.long)
    accuracy, _ = clean_pass(model, images, labels, 50, torch.device("cpu"), draws=10)
    assert model.passes == 40 and abs(accuracy - 0.5) < 0.05


def test_only_a_random_patch_order_makes_g_stochastic():
    backbone = build_model("vgg16", dims=3, num_classes=10, width=0.0625, stem="small", depth_kernel=1)
    assert is_stochastic(DefendedClassifier(Volumizer(16, ranking="random", seed=3), backbone))
    assert not is_stochastic(DefendedClassifier(Volumizer(16, metric="mi"), backbone))
    assert not is_stochastic(DefendedClassifier(Volumizer(16, ranking="identity"), backbone))
    assert not is_stochastic(nn.Linear(2, 2))


def test_a_deterministic_model_is_classified_once_by_the_runner():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    clean_pass(model, torch.rand(8, 3, 4, 4), torch.zeros(8, dtype=torch.long), 8, torch.device("cpu"), draws=10)
    assert len(calls) == 1
