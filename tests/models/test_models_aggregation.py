"""Image-level predictions from per-patch logits."""

from __future__ import annotations

import math

import pytest
import torch

from voldefense.errors import ConfigError
from voldefense.models.aggregation import Aggregate, aggregate


def test_mean_logits():
    z = torch.randn(3, 5, 4)
    assert torch.allclose(aggregate(z), z.mean(1))


def test_mean_probs_is_log_of_mean_probability():
    z = torch.randn(3, 5, 4) * 10
    out = aggregate(z, "mean_probs")
    assert torch.allclose(out.exp(), z.softmax(-1).mean(1), atol=1e-6)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3), atol=1e-5)


def test_majority_vote_counts_votes_and_breaks_ties_by_mean_probability():
    # 4 patches, 3 classes: votes 2 for class 1, 1 for class 0, 1 for class 2.
    z = torch.tensor([[[5.0, 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5]]])
    out = aggregate(z, "majority_vote")
    votes = torch.tensor([[0.25, 0.5, 0.25]])
    assert torch.allclose(out, votes, atol=1 / 8)  # the tie-break adds less than half a vote
    assert out.argmax(1).item() == 1
    # A 2-2 tie goes to the class with the higher mean probability (class 2 is more confident).
    z = torch.tensor([[[1.0, 0, 0], [1.0, 0, 0], [0, 0, 9], [0, 0, 9]]])
    assert aggregate(z, "majority_vote").argmax(1).item() == 2


def test_majority_vote_gradient_is_the_mean_probability_surrogate():
    z = torch.randn(2, 6, 5, requires_grad=True)
    w = torch.randn(2, 5)
    (aggregate(z, "majority_vote") * w).sum().backward()
    surrogate = z.detach().clone().requires_grad_(True)
    (surrogate.softmax(-1).mean(1) * w).sum().backward()
    assert z.grad.abs().sum() > 0
    assert torch.allclose(z.grad, surrogate.grad, atol=1e-6)


def test_one_patch_can_move_mean_logits_arbitrarily_but_only_one_vote():
    z = torch.zeros(1, 5, 3)
    z[..., 0] = 1.0  # every patch says class 0
    z[0, 0] = torch.tensor([0.0, 100.0, 0.0])  # one corrupted patch shouts class 1
    assert aggregate(z).argmax(1).item() == 1
    assert aggregate(z, "majority_vote").argmax(1).item() == 0


def test_unknown_method_and_bad_shape():
    with pytest.raises(ConfigError, match="aggregation"):
        Aggregate("median")
    with pytest.raises(ValueError, match="B, N, K"):
        aggregate(torch.randn(2, 3))


def test_module_matches_function():
    z = torch.randn(2, 3, 4)
    for method in ("mean_logits", "mean_probs", "majority_vote"):
        assert torch.allclose(Aggregate(method)(z), aggregate(z, method))
    assert math.isclose(
        float(aggregate(torch.zeros(1, 2, 2), "mean_probs")[0, 0]), math.log(0.5), rel_tol=1e-6
    )
