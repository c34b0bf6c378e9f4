"""Loss plugins: cross_entropy (image logits) and pal (per-patch logits, paper eq. 10)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from voldefense.errors import ConfigError, TensorError


def test_registered_with_targets(fresh_registry):
    assert fresh_registry.get("loss", "cross_entropy").target == "image"
    assert fresh_registry.get("loss", "pal").target == "patch"


def test_cross_entropy_matches_torch(fresh_registry):
    loss = fresh_registry.get("loss", "cross_entropy").build()
    logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(loss(logits, labels), F.cross_entropy(logits, labels))
    smooth = fresh_registry.get("loss", "cross_entropy").build(label_smoothing=0.1)
    assert torch.allclose(smooth(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_pal_is_sum_over_patches_mean_over_batch(fresh_registry):
    loss = fresh_registry.get("loss", "pal").build(patch_reduction="sum")
    logits, labels = torch.randn(3, 4, 5), torch.tensor([0, 2, 4])
    expected = (
        sum(sum(F.cross_entropy(logits[b, n : n + 1], labels[b : b + 1]) for n in range(4)) for b in range(3))
        / 3
    )
    assert torch.allclose(loss(logits, labels), expected, atol=1e-6)
    mean = fresh_registry.get("loss", "pal").build()  # the default: a gradient that does not grow with N
    assert torch.allclose(mean(logits, labels), expected / 4, atol=1e-6)


def test_pal_with_one_patch_is_cross_entropy(fresh_registry):
    pal = fresh_registry.get("loss", "pal").build(label_smoothing=0.2)
    logits, labels = torch.randn(6, 1, 3), torch.randint(0, 3, (6,))
    assert torch.allclose(pal(logits, labels), F.cross_entropy(logits[:, 0], labels, label_smoothing=0.2))


def test_wrong_logit_shapes_say_which_loss_to_use(fresh_registry):
    with pytest.raises(TensorError, match="use loss 'cross_entropy'"):
        fresh_registry.get("loss", "pal").build()(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(TensorError, match="use loss 'pal'"):
        fresh_registry.get("loss", "cross_entropy").build()(torch.randn(2, 4, 3), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    "name, options",
    [
        ("pal", {"label_smoothing": 1.5}),
        ("pal", {"patch_reduction": "max"}),
        ("cross_entropy", {"label_smoothing": -0.1}),
        ("pal", {"weight": 2}),
    ],
)
def test_bad_options(fresh_registry, name, options):
    with pytest.raises(ConfigError):
        fresh_registry.get("loss", name).build(**options)


def test_pal_gradient_reaches_every_patch(fresh_registry):
    logits = torch.randn(2, 4, 3, requires_grad=True)
    fresh_registry.get("loss", "pal").build()(logits, torch.tensor([1, 2])).backward()
    assert (logits.grad.abs().sum(-1) > 0).all()
