"""Max norm (L-infinity) vs numpy; max_norm(x, x) = 0."""

from __future__ import annotations

import numpy as np
import torch

from voldefense.registry import get_registry


def test_max_norm_matches_numpy():
    g = torch.Generator().manual_seed(0)
    x, r = torch.rand(10, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    got = get_registry().get("metric", "max_norm").build()(x, r)
    expected = np.abs(x.numpy() - r.numpy()).reshape(10, -1).max(1)
    np.testing.assert_allclose(got.numpy(), expected)


def test_max_norm_identity_and_flags():
    x = torch.rand(4, 3, 4, 4)
    assert torch.all(get_registry().get("metric", "max_norm").build()(x, x) == 0)
    spec = get_registry().get("metric", "max_norm")
    assert spec.distance and not spec.larger_is_simpler
