"""pal_weighted: the loss contract (scalar, gradient), PAL at uniform weights, the weighted formula written
out, and option errors."""

from __future__ import annotations

import pytest
import torch

from voldefense.errors import ConfigError


def _reference(logits: torch.Tensor, labels: torch.Tensor, weights: list[float], smoothing: float = 0.0):
    # Written out from the definitions: smoothed per-patch cross-entropy, weighted sum over slices with the
    # weights rescaled to mean 1, mean over the batch.
    b, n, k = logits.shape
    w = torch.tensor(weights, dtype=torch.float64)
    w = w * n / w.sum()
    logp = torch.log_softmax(logits.double(), dim=-1)
    total = 0.0
    for i in range(b):
        target = torch.full((k,), smoothing / k, dtype=torch.float64)
        target[labels[i]] += 1.0 - smoothing
        for j in range(n):
            total += w[j] * -(target * logp[i, j]).sum()
    return total / b


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 5, 4, generator=g) * 3, torch.tensor([0, 3, 1])


def test_uniform_weights_are_pal(extras_registry, batch):
    logits, labels = batch
    loss = extras_registry.get("loss", "pal_weighted").build()
    assert torch.allclose(loss(logits, labels).double(), _reference(logits, labels, [1.0] * 5), atol=1e-5)


@pytest.mark.parametrize("decay", [0.5, 2.0])
def test_geometric_decay(extras_registry, batch, decay):
    logits, labels = batch
    loss = extras_registry.get("loss", "pal_weighted").build(decay=decay, label_smoothing=0.1)
    expected = _reference(logits, labels, [decay**i for i in range(5)], smoothing=0.1)
    assert torch.allclose(loss(logits, labels).double(), expected, atol=1e-5)


def test_explicit_weights_select_slices(extras_registry, batch):
    logits, labels = batch
    logits = logits.clone().requires_grad_(True)
    loss = extras_registry.get("loss", "pal_weighted").build(weights=[0, 0, 3, 0, 1])
    value = loss(logits, labels)
    assert torch.allclose(value.double(), _reference(logits.detach(), labels, [0, 0, 3, 0, 1]), atol=1e-5)
    value.backward()
    # Slices with weight 0 get no gradient; weighted ones do.
    per_slice = logits.grad.abs().sum((0, 2))
    assert (per_slice[[0, 1, 3]] == 0).all() and (per_slice[[2, 4]] > 0).all()


def test_scalar_with_gradient_and_patch_target(extras_registry):
    spec = extras_registry.get("loss", "pal_weighted")
    assert spec.target == "patch"
    logits = torch.randn(2, 4, 3, requires_grad=True)
    value = spec.build(decay=0.8)(logits, torch.tensor([2, 0]))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_errors(extras_registry):
    spec = extras_registry.get("loss", "pal_weighted")
    with pytest.raises(ConfigError, match="decay"):
        spec.build(decay=0)
    with pytest.raises(ConfigError, match="non-negative"):
        spec.build(weights=[1, -1])
    with pytest.raises(ConfigError, match="one weight per patch"):
        spec.build(weights=[1, 2])(torch.zeros(1, 3, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\(B, N, K\)"):
        spec.build()(torch.zeros(2, 3), torch.tensor([0, 1]))
