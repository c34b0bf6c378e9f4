"""PSNR vs a numpy formula; identical inputs give the documented cap, never inf/NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voldefense.errors import ConfigError
from voldefense.registry import get_registry


def test_psnr_matches_numpy():
    g = torch.Generator().manual_seed(0)
    x, r = torch.rand(10, 3, 8, 8, generator=g), torch.rand(10, 3, 8, 8, generator=g)
    got = get_registry().get("metric", "psnr").build()(x, r)
    mse = ((x.double().numpy() - r.double().numpy()) ** 2).reshape(10, -1).mean(1)
    np.testing.assert_allclose(got.numpy(), 10 * np.log10(1.0 / mse), rtol=1e-5)


def test_psnr_data_range():
    x, r = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    assert get_registry().get("metric", "psnr").build(data_range=2.0)(x, r).item() == pytest.approx(
        10 * np.log10(4.0 / 0.25)
    )


def test_identical_inputs_give_max_db():
    x = torch.rand(5, 3, 4, 4)
    assert torch.all(get_registry().get("metric", "psnr").build()(x, x) == 100.0)
    assert torch.all(get_registry().get("metric", "psnr").build(max_db=60)(x, x) == 60.0)


def test_psnr_flags_and_options():
    spec = get_registry().get("metric", "psnr")
    assert spec.distance and spec.larger_is_simpler
    with pytest.raises(ConfigError, match="data_range"):
        spec.build(data_range=0)
