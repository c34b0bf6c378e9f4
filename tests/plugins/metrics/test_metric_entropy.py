"""Entropy metric vs an independent numpy/scipy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from voldefense.errors import ConfigError, TensorError
from voldefense.registry import get_registry


def images(seed: int, m: int, shape: tuple[int, ...] = (3, 8, 8)) -> torch.Tensor:
    # 8-bit-valued images, as real data; power-of-two bins never put such a value exactly on a bin edge.
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (m, *shape), generator=g).float() / 255


def numpy_entropy(x: np.ndarray, bins: int) -> np.ndarray:
    out = []
    for sample in x.astype(np.float64):
        counts, _ = np.histogram(sample.ravel(), bins=bins, range=(0.0, 1.0))
        out.append(scipy.stats.entropy(counts, base=2))
    return np.array(out)


@pytest.mark.parametrize("bins", [2, 16, 32, 256])
def test_entropy_matches_scipy(bins):
    x = images(bins, 12)
    got = get_registry().get("metric", "entropy").build(bins=bins)(x)
    assert got.shape == (12,) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), numpy_entropy(x.numpy(), bins), rtol=1e-5, atol=1e-5)


def test_sort_path_matches_scipy():
    # 4096 bins for 3x2x2 = 12 values per sample takes the sort-based counting path.
    x = images(1, 20, (3, 2, 2))
    got = get_registry().get("metric", "entropy").build(bins=4096)(x)
    np.testing.assert_allclose(got.numpy(), numpy_entropy(x.numpy(), 4096), rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    m=st.integers(1, 6),
    c=st.integers(1, 3),
    side=st.integers(1, 9),
    bins=st.sampled_from([2, 4, 8, 32, 64, 128]),
)
def test_entropy_random_shapes(seed, m, c, side, bins):
    x = images(seed, m, (c, side, side))
    got = get_registry().get("metric", "entropy").build(bins=bins)(x)
    np.testing.assert_allclose(got.numpy(), numpy_entropy(x.numpy(), bins), rtol=1e-5, atol=1e-5)


def test_constant_sample_has_zero_entropy_and_uniform_has_log_bins():
    constant = torch.full((1, 1, 4, 4), 0.3)
    ramp = (torch.arange(64).float() / 64 + 1 / 128).reshape(1, 1, 8, 8)  # one value in each of 64 bins
    metric = get_registry().get("metric", "entropy").build(bins=64)
    # log(n) - (n log n) / n: zero up to the rounding of two logarithms, not exactly.
    assert metric(constant).item() == pytest.approx(0.0, abs=1e-6)
    assert metric(ramp).item() == pytest.approx(6.0, abs=1e-6)


def test_values_outside_unit_interval_are_clamped():
    metric = get_registry().get("metric", "entropy").build(bins=4)
    x = torch.tensor([[[[-1.0, 0.0, 1.0, 2.0]]]])
    assert metric(x).item() == pytest.approx(1.0)  # two in the first bin, two in the last


def test_spec_flags_and_bad_options():
    spec = get_registry().get("metric", "entropy")
    assert spec.distance is False and spec.larger_is_simpler is False
    for bad in (1, 0, 2.5, True, 10**6):
        with pytest.raises(ConfigError, match="bins"):
            spec.build(bins=bad)
    with pytest.raises(TensorError, match="float"):
        spec.build()(torch.zeros(2, 1, 2, 2, dtype=torch.uint8))
