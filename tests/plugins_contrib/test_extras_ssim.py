"""ssim: an independent numpy implementation, the metric contract, and SSIM's defining properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from voldefense.errors import ConfigError


def _numpy_ssim(x: np.ndarray, y: np.ndarray, size: int, sigma: float = 1.5) -> np.ndarray:
    """Mean SSIM per sample, straight from Wang et al. (2004), with explicit windows; x, y: (M, C, h, w)."""
    c1, c2 = 0.01**2, 0.03**2
    ax = np.arange(size) - (size - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    out = []
    for xs, ys in zip(x, y, strict=True):
        values = []
        for xc, yc in zip(xs, ys, strict=True):
            px = sliding_window_view(xc, (size, size))  # (h', w', size, size)
            py = sliding_window_view(yc, (size, size))
            mx = (px * window).sum((-1, -2))
            my = (py * window).sum((-1, -2))
            vx = (window * (px - mx[..., None, None]) ** 2).sum((-1, -2))
            vy = (window * (py - my[..., None, None]) ** 2).sum((-1, -2))
            cov = (window * (px - mx[..., None, None]) * (py - my[..., None, None])).sum((-1, -2))
            s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            values.append(s)
        out.append(np.mean(values))
    return np.array(out)


@pytest.mark.parametrize(("h", "w", "window"), [(16, 16, 7), (8, 12, 7), (4, 4, 3), (6, 6, 5)])
def test_matches_numpy_reference(extras_registry, h, w, window):
    metric = extras_registry.get("metric", "ssim").build()
    g = torch.Generator().manual_seed(h * w)
    x = torch.rand(5, 3, h, w, generator=g, dtype=torch.float64)
    ref = (x[0] * 0.5 + 0.25 * torch.rand(3, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = metric(x, ref)
    assert metric.window_for(h, w) == window
    expected = _numpy_ssim(x.numpy(), np.broadcast_to(ref.numpy(), x.shape), window)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_contract_finite_scores_of_shape_m(extras_registry):
    spec = extras_registry.get("metric", "ssim")
    assert spec.distance and spec.larger_is_simpler
    metric = spec.build(window_size=5)
    x = torch.rand(7, 3, 16, 16)
    for reference in (x[:1], x[0], torch.zeros(1, 3, 16, 16), torch.rand(7, 3, 16, 16)):
        scores = metric(x, reference)
        assert scores.shape == (7,) and scores.dtype == torch.float32
        assert torch.isfinite(scores).all()
    # Constant patches (zero variance) are where a careless SSIM divides by zero.
    flat = torch.full((2, 1, 8, 8), 0.5)
    assert torch.isfinite(metric(flat, torch.zeros(1, 1, 8, 8))).all()


def test_identity_is_maximal_and_noise_lowers_the_score(extras_registry):
    metric = extras_registry.get("metric", "ssim").build()
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 16, 16, generator=g)
    noise = torch.randn(4, 3, 16, 16, generator=g)
    levels = torch.tensor([0.0, 0.05, 0.2, 0.5]).view(4, 1, 1, 1)
    x = (ref + levels * noise).clamp(0, 1)
    scores = metric(x, ref)
    assert torch.isclose(scores[0], torch.tensor(1.0))
    # More noise, less structural similarity: larger score = more like the reference.
    assert (scores[:-1] > scores[1:]).all()


def test_symmetric_and_batch_independent(extras_registry):
    metric = extras_registry.get("metric", "ssim").build()
    a, b = torch.rand(3, 2, 10, 10), torch.rand(3, 2, 10, 10)
    assert torch.allclose(metric(a, b), metric(b, a), atol=1e-6)
    assert torch.allclose(metric(a[1:2], b[1:2]), metric(a, b)[1:2], atol=1e-6)


def test_errors():
    from voldefense_extras.ssim import SSIM

    with pytest.raises(ConfigError, match="odd"):
        SSIM(window_size=4)
    with pytest.raises(ValueError, match="reference"):
        SSIM()(torch.rand(2, 3, 8, 8))
