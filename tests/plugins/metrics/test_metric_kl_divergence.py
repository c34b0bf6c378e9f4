"""KL divergence vs scipy, smoothing of empty bins, and KL(x, x) = 0."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from voldefense.errors import ConfigError
from voldefense.registry import get_registry


def images(seed: int, m: int, shape: tuple[int, ...] = (3, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (m, *shape), generator=g).float() / 255


def numpy_kl(x: np.ndarray, r: np.ndarray, bins: int, smoothing: float) -> np.ndarray:
    out = []
    for a, b in zip(x.astype(np.float64), np.broadcast_to(r, x.shape).astype(np.float64), strict=True):
        p, _ = np.histogram(a.ravel(), bins=bins, range=(0, 1))
        q, _ = np.histogram(b.ravel(), bins=bins, range=(0, 1))
        out.append(scipy.stats.entropy(p + smoothing, q + smoothing, base=2))
    return np.array(out)


@pytest.mark.parametrize(("bins", "smoothing"), [(8, 0.5), (32, 0.5), (256, 1e-3), (64, 2.0)])
def test_kl_matches_scipy(bins, smoothing):
    x, r = images(bins, 10), images(bins + 3, 10)
    got = get_registry().get("metric", "kl").build(bins=bins, smoothing=smoothing)(x, r)
    np.testing.assert_allclose(
        got.numpy(), numpy_kl(x.numpy(), r.numpy(), bins, smoothing), rtol=1e-4, atol=1e-5
    )


def test_kl_with_empty_bins_is_finite():
    # Disjoint supports: every bin of x is empty in the reference and vice versa.
    x = torch.full((4, 3, 4, 4), 0.1)
    r = torch.full((3, 4, 4), 0.9)
    got = get_registry().get("metric", "kl").build(bins=256, smoothing=1e-6)(x, r)
    assert torch.isfinite(got).all() and (got > 0).all()


def test_kl_of_sample_with_itself_is_zero():
    x = images(2, 16)
    assert torch.all(get_registry().get("metric", "kl").build()(x, x) == 0)


def test_kl_rejects_bad_smoothing():
    for bad in (0, -1.0, float("nan"), "a"):
        with pytest.raises(ConfigError, match="smoothing"):
            get_registry().get("metric", "kl").build(smoothing=bad)
