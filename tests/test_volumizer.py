"""The volumizer: shapes, pixel conservation (paper eq. 4), gradients, ranking modes, padding, errors."""

from __future__ import annotations

import pytest
import torch

from voldefense import Volumizer
from voldefense.errors import ConfigError, TensorError, UnknownPluginError
from voldefense.registry import get_registry

METRICS = ("entropy", "mi", "kl", "psnr", "max_norm", "joint_entropy", "mse")


def images(b: int = 4, c: int = 3, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), generator=g).float() / 255


@pytest.mark.parametrize("metric", METRICS)
def test_volume_shape_and_pixel_conservation(metric):
    x = images()
    v = Volumizer(16, metric=metric)
    volume, perm = v.volumize(x)
    assert volume.shape == (4, 3, 6, 16, 16) and perm.shape == (4, 6) and perm.dtype == torch.long
    assert v.num_patches((32, 48)) == 6
    assert torch.equal(v.unvolumize(volume, perm, (32, 48)), x)
    assert torch.equal(v(x), volume)


def test_depth_slices_are_the_ranked_source_patches():
    x = images()
    v = Volumizer((16, 8), metric="mse", reference=0)
    volume, perm = v.volumize(x)
    cols = 48 // 8
    for b in range(4):
        for i, src in enumerate(perm[b].tolist()):
            r, c = divmod(src, cols)
            assert torch.equal(volume[b, :, i], x[b, :, r * 16 : (r + 1) * 16, c * 8 : (c + 1) * 8])
    # Reference 0 is at MSE 0 from itself, so it comes first in ascending order.
    assert torch.all(perm[:, 0] == 0)


def test_ranking_follows_the_metric_and_the_auto_reference():
    x = images(2)
    x[0, :, 16:32, 16:32] = 0.5  # patch 4 of image 0 is flat: the lowest-entropy patch
    volume, perm, scores = Volumizer(16, metric="mi", order="descending").volumize_with_scores(x)
    ranked = scores.gather(1, perm)
    assert torch.all(ranked.diff(dim=1) <= 0)
    entropy = get_registry().get("metric", "entropy").build()
    patches = Volumizer(16).patches(x)
    expected = (
        get_registry().get("metric", "mi").build()(patches[1], patches[1, entropy(patches[1]).argmin()])
    )
    torch.testing.assert_close(scores[1], expected)
    # MI against a constant reference is 0 for every patch of image 0.
    torch.testing.assert_close(scores[0], torch.zeros(6), atol=1e-5, rtol=0)


def test_gradient_flows_through_the_gather():
    x = images(2).requires_grad_()
    v = Volumizer(16, metric="mi")
    volume, perm = v.volumize(x)
    weights = torch.randn_like(volume)
    (volume * weights).sum().backward()
    # d/dx of <volume, w> puts each weight back at its pixel: exactly unvolumize(w).
    torch.testing.assert_close(x.grad, v.unvolumize(weights, perm, (32, 48)))


def test_unvolumize_is_differentiable():
    v = Volumizer(16, metric="mse")
    volume, perm = v.volumize(images(1))
    volume = volume.clone().requires_grad_()
    v.unvolumize(volume, perm, (32, 48)).square().sum().backward()
    torch.testing.assert_close(volume.grad, 2 * volume.detach())


def test_identity_and_random_rankings():
    x = images(3)
    _, perm = Volumizer(16, ranking="identity").volumize(x)
    assert torch.equal(perm, torch.arange(6).expand(3, 6))
    a, b = Volumizer(16, ranking="random", seed=7), Volumizer(16, ranking="random", seed=7)
    pa1, pa2 = a.volumize(x)[1], a.volumize(x)[1]
    assert torch.equal(pa1, b.volumize(x)[1]) and torch.equal(pa2, b.volumize(x)[1])
    assert not torch.equal(pa1, pa2)  # a new permutation per call
    assert torch.equal(pa1.sort(1).values, torch.arange(6).expand(3, 6))
    torch.manual_seed(3)
    g1 = Volumizer(16, ranking="random").volumize(x)[1]
    torch.manual_seed(3)
    assert torch.equal(g1, Volumizer(16, ranking="random").volumize(x)[1])
    volume, perm = Volumizer(16, ranking="random", seed=1).volumize(x)
    assert torch.equal(Volumizer(16).unvolumize(volume, perm, (32, 48)), x)


def test_non_divisible_size_raises_unless_pad():
    x = images(2, h=30, w=40)
    with pytest.raises(ConfigError, match="not divisible.*pad=True"):
        Volumizer(16).volumize(x)
    v = Volumizer(16, pad=True)
    volume, perm = v.volumize(x)
    assert volume.shape == (2, 3, 6, 16, 16) and v.num_patches((30, 40)) == 6
    assert torch.equal(v.unvolumize(volume, perm, (30, 40)), x)
    # Replicate padding: the padded bottom rows repeat the last image row.
    bottom_left = volume[0, :, (perm[0] == 3).nonzero().item()]
    assert torch.equal(bottom_left[:, 14:, :], x[0, :, 29:30, :16].expand(3, 2, 16))


def test_constructor_errors():
    with pytest.raises(ConfigError, match="patch_size"):
        Volumizer(0)
    with pytest.raises(ConfigError, match="patch_size"):
        Volumizer((16, 16, 1))  # type: ignore[arg-type]
    with pytest.raises(UnknownPluginError):
        Volumizer(metric="mutual_info")
    with pytest.raises(ConfigError, match="order"):
        Volumizer(order="up")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ranking"):
        Volumizer(ranking="sorted")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bins"):
        Volumizer(metric="mi", metric_options={"bins": 0})
    with pytest.raises(ConfigError, match="reference"):
        Volumizer(reference=-1)


def test_bad_inputs():
    v = Volumizer(16)
    with pytest.raises(TensorError, match=r"\(B, C, H, W\)"):
        v.volumize(torch.rand(3, 32, 32))
    volume, perm = v.volumize(images(1))
    with pytest.raises(TensorError, match="volume"):
        v.unvolumize(volume, perm, (32, 32))
    with pytest.raises(TensorError, match="perm"):
        v.unvolumize(volume, perm[:, :3], (32, 48))


@pytest.mark.gpu
def test_cuda_volumize_matches_cpu():
    x = images(8)
    v = Volumizer(16, metric="mi")
    volume, perm = v.volumize(x.cuda())
    assert volume.device.type == "cuda"
    assert torch.equal(perm.cpu(), v.volumize(x)[1])
    assert torch.equal(v.unvolumize(volume, perm, (32, 48)).cpu(), x)
