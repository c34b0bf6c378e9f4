"""MSE vs numpy; MSE(x, x) = 0."""

from __future__ import annotations

import numpy as np
import torch

from voldefense.registry import get_registry


def test_mse_matches_numpy():
    g = torch.Generator().manual_seed(0)
    x, r = torch.rand(10, 3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    got = get_registry().get("metric", "mse").build()(x, r)
    expected = ((x.double().numpy() - r.double().numpy()) ** 2).reshape(10, -1).mean(1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_mse_identity_and_flags():
    x = torch.rand(4, 3, 4, 4)
    assert torch.all(get_registry().get("metric", "mse").build()(x, x) == 0)
    spec = get_registry().get("metric", "mse")
    assert spec.distance and not spec.larger_is_simpler
