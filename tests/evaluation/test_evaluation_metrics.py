"""Evaluation metrics on hand-made outcomes (exact values) and evaluate_attack on a known attack."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from voldefense.attacks.base import AttackResult
from voldefense.errors import ConfigError, TensorError
from voldefense.evaluation import AttackOutcome, evaluate_attack, summarize, worst_case


def _outcome(clean, adv, labels=None, queries=None, seconds=2.0):
    clean = torch.tensor(clean, dtype=torch.bool)
    adv = torch.tensor(adv, dtype=torch.bool)
    b = clean.shape[0]
    return AttackOutcome(
        clean_correct=clean,
        adversarial_correct=adv,
        queries=torch.tensor(queries if queries is not None else [10.0] * b),
        seconds=seconds,
        labels=torch.tensor(labels if labels is not None else list(range(b))),
    )


def test_summary_values_by_definition():
    # 4 images, 2 copies. Clean: images 0, 1, 2 correct. Per-image mean over copies: 1, .5, 0, 1.
    o = _outcome([1, 1, 1, 0], [[1, 1, 0, 1], [1, 0, 0, 1]], queries=[0, 10, 20, 30])
    s = summarize(o)
    assert s.num_images == 4 and s.num_copies == 2
    assert s.clean_accuracy == pytest.approx(0.75)
    assert s.attacked_accuracy == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert s.robustness_delta == pytest.approx(s.attacked_accuracy - 0.75)
    assert s.defense_success_rate == pytest.approx((1 + 0.5 + 0) / 3)
    assert s.attack_success_rate == pytest.approx(1 - (1.5 / 3))
    assert s.mean_queries == pytest.approx(15.0)
    assert s.seconds_per_image == pytest.approx(0.5)
    assert o.summary() == s and s.as_dict()["clean_accuracy"] == pytest.approx(0.75)


def test_no_clean_correct_gives_nan_rates():
    s = summarize(_outcome([0, 0], [[0, 1]]))
    assert math.isnan(s.defense_success_rate) and math.isnan(s.attack_success_rate)
    assert s.attacked_accuracy == pytest.approx(0.5)


def test_worst_case_needs_every_attack_and_copy_to_fail():
    a = _outcome([1, 1, 1, 0], [[1, 1, 0, 1], [1, 1, 1, 1]])
    b = _outcome([1, 1, 1, 0], [[1, 0, 1, 1]])
    w = worst_case([a, b])
    assert w.robust.tolist() == [True, False, False, False]  # image 3: attacks failed but clean was wrong
    assert w.robust_accuracy == pytest.approx(0.25) and w.clean_accuracy == pytest.approx(0.75)
    with pytest.raises(ConfigError):
        worst_case([a, _outcome([1, 1, 1, 0], [[1, 1, 1, 1]], labels=[3, 2, 1, 0])])
    with pytest.raises(ConfigError):
        worst_case([])


class _Threshold(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5, else class 0."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([-m, m], dim=1)


class _SetTo:
    """Sets every copy of each image to a fixed value; copies given by `values`."""

    def __init__(self, values):
        self.values = values
        self.seeds = []

    def run(self, model, images, labels, size, *, seed=0):
        self.seeds.append(seed)
        adv = torch.stack([torch.full_like(images, v) for v in self.values])
        return AttackResult(adv, torch.full((images.shape[0],), 3), 1, 0.0)


def test_evaluate_attack_counts_per_copy_and_batches():
    images = torch.cat([torch.full((3, 1, 4, 4), 0.2), torch.full((3, 1, 4, 4), 0.8)])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    attack = _SetTo([0.1, 0.9])  # copy 0 is all class 0, copy 1 all class 1
    o = evaluate_attack(_Threshold(), attack, images, labels, 1, seed=5, batch_size=4)
    assert attack.seeds == [5, 6]
    assert o.clean_correct.all()
    assert o.adversarial_correct.tolist() == [[True] * 3 + [False] * 3, [False] * 3 + [True] * 3]
    s = summarize(o)
    assert s.attacked_accuracy == pytest.approx(0.5) and s.mean_queries == pytest.approx(3.0)
    with pytest.raises(TensorError):
        evaluate_attack(_Threshold(), attack, images, labels[:3], 1)
