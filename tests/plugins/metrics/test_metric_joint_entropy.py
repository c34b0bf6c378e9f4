"""Joint entropy vs a numpy reference, and the identity JE(x, x) = H(x)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from voldefense.registry import get_registry


def images(seed: int, m: int, shape: tuple[int, ...] = (3, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (m, *shape), generator=g).float() / 255


def numpy_joint_entropy(x: np.ndarray, r: np.ndarray, bins: int) -> np.ndarray:
    out = []
    for a, b in zip(x.astype(np.float64), np.broadcast_to(r, x.shape).astype(np.float64), strict=True):
        joint, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins, range=[[0, 1], [0, 1]])
        out.append(scipy.stats.entropy(joint.ravel(), base=2))
    return np.array(out)


@pytest.mark.parametrize("bins", [2, 32, 64, 256])
@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 16, 16), (3, 2, 2)])
def test_joint_entropy_matches_numpy(bins, shape):
    # Covers both counting paths: dense tables (few bins) and sorted joint codes (256 bins).
    x, r = images(bins, 9, shape), images(bins + 1, 9, shape)
    got = get_registry().get("metric", "joint_entropy").build(bins=bins)(x, r)
    np.testing.assert_allclose(
        got.numpy(), numpy_joint_entropy(x.numpy(), r.numpy(), bins), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("bins", [16, 256])
def test_joint_entropy_with_itself_is_entropy(bins):
    x = images(5, 12)
    je = get_registry().get("metric", "joint_entropy").build(bins=bins)(x, x)
    h = get_registry().get("metric", "entropy").build(bins=bins)(x)
    torch.testing.assert_close(je, h, rtol=1e-5, atol=1e-5)


def test_dense_and_sorted_counting_agree():
    from voldefense.plugins.metrics import _histogram as hist

    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 50, (64, 300), generator=g, dtype=torch.int32)
    dense = hist._sum_clogc_counts(hist._counts(codes, 50, torch.float64))
    ordered = hist._sum_clogc_sorted(codes, torch.float64)
    torch.testing.assert_close(dense, ordered)


def test_spec_flags():
    spec = get_registry().get("metric", "joint_entropy")
    assert spec.distance and not spec.larger_is_simpler
