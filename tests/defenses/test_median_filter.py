"""Median filter: equal to ART's SpatialSmoothing, naive vs BPDA gradients, the defense's fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from voldefense.defenses.base import TrainBudget
from voldefense.defenses.median import FilteredClassifier, MedianFilter, MedianFilterDefense, median_filter
from voldefense.errors import ConfigError
from voldefense.testing import accuracy, make_toy_images, tiny_cnn


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
def test_equals_art_spatial_smoothing(window) -> None:
    from art.defences.preprocessor import SpatialSmoothing

    g = torch.Generator().manual_seed(window)
    x = torch.rand(3, 3, 9, 12, generator=g)
    x[0, 1, :4, :4] = 0.5  # ties inside windows
    x[1] = (x[1] * 4).round() / 4  # many equal values
    ref, _ = SpatialSmoothing(window_size=window, channels_first=True)(x.numpy())
    np.testing.assert_array_equal(median_filter(x, window).numpy(), ref)


def test_removes_isolated_pixels() -> None:
    x = torch.full((1, 3, 8, 8), 0.2)
    x[0, :, 3, 5] = 1.0
    assert torch.equal(median_filter(x, 3), torch.full_like(x, 0.2))


def test_naive_and_bpda_share_forward_and_differ_in_gradient() -> None:
    torch.manual_seed(0)
    clf = tiny_cnn(4).eval()
    x = torch.rand(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 3])
    grads, outs = {}, {}
    for mode in ("naive", "bpda"):
        model = FilteredClassifier(clf, 3, mode)
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        nn.functional.cross_entropy(out, y).backward()
        outs[mode], grads[mode] = out.detach(), xi.grad
    assert torch.equal(outs["naive"], outs["bpda"])
    # BPDA: the filter's backward is the identity -> the classifier's gradient at the filtered image
    filtered = median_filter(x, 3).requires_grad_(True)
    nn.functional.cross_entropy(clf(filtered), y).backward()
    torch.testing.assert_close(grads["bpda"], filtered.grad)
    # naive: the gradient reaches only pixels that are some window's median, so it is sparser than BPDA's
    assert (grads["naive"] != 0).sum() < (grads["bpda"] != 0).sum()
    assert not torch.allclose(grads["naive"], grads["bpda"])


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="window"):
        MedianFilter(0)
    with pytest.raises(ConfigError, match="gradient"):
        MedianFilter(3, "straight")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="larger than the images"):
        median_filter(torch.rand(1, 1, 4, 4), 5)
    with pytest.raises(ConfigError, match="train_on_filtered"):
        MedianFilterDefense(3, train_on_filtered="yes")  # type: ignore[arg-type]


def test_defense_reuses_f_or_trains_on_filtered_images() -> None:
    x, y = make_toy_images(192, image_size=16, seed=0)
    budget = TrainBudget(epochs=10, batch_size=32, lr=1e-2)
    built = []

    def make_model(in_channels: int) -> nn.Module:
        built.append(in_channels)
        torch.manual_seed(0)
        return tiny_cnn(4, in_channels=in_channels)

    f = make_model(3).eval()
    built.clear()
    reused = MedianFilterDefense(window=3).fit(make_model, x, y, budget, base_model=f)
    assert built == [] and reused.info["reuses_undefended_model"]
    assert reused.model_for_attack("bpda").classifier is f and reused.model.classifier is f
    assert reused.view_names == ("naive", "bpda") and not reused.certifiable

    trained = MedianFilterDefense(window=3, train_on_filtered=True).fit(
        make_model, x, y, budget, base_model=f
    )
    assert built == [3] and trained.model.classifier is not f
    assert accuracy(trained.model, x, y) > 0.8
    with torch.no_grad():
        assert torch.equal(trained.model(x[:8]), trained.model_for_attack("bpda")(x[:8]))
