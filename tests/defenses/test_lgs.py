"""Local gradient smoothing: a hand-computed case, window grid, naive vs BPDA gradients, options, fit."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from voldefense.defenses.base import TrainBudget
from voldefense.defenses.lgs import (
    LocalGradientSmoothing,
    LocalGradientSmoothingDefense,
    local_gradient_smoothing,
    window_starts,
)
from voldefense.defenses.preprocessing import TransformedClassifier
from voldefense.errors import ConfigError
from voldefense.testing import make_toy_images, tiny_cnn


def test_hand_computed_case() -> None:
    """A bright 2x2 corner block and one faint pixel, windows 3x3 at stride 3, threshold 0.1, λ = 1.

    Forward differences give gradient magnitudes 1 at (0,1) and (1,0), √2 at (1,1) (the block's edge), and 0.1,
    0.1, 0.1·√2 at (4,3), (3,4), (4,4) around the faint pixel; normalised by the maximum √2. The top-left window
    has mean (1/√2 + 1/√2 + 1) / 9 ≈ 0.27 > 0.1 and is kept; the bottom-right one has mean
    (0.1/√2 · 2 + 0.1) / 9 ≈ 0.027 and is not. So x(0,1) = x(1,0) = 1 · (1 - 1/√2), x(1,1) = 1 · (1 - 1) = 0,
    x(0,0) (flat: ĝ = 0) stays 1 and the faint pixel stays 0.1."""
    x = torch.zeros(1, 3, 6, 6)
    x[..., 0:2, 0:2] = 1.0
    x[..., 4, 4] = 0.1
    out = local_gradient_smoothing(x, window=3, overlap=0, threshold=0.1, smoothing_factor=1.0)
    expected = torch.zeros(1, 3, 6, 6)
    expected[..., 0, 0] = 1.0
    expected[..., 0, 1] = expected[..., 1, 0] = 1 - 1 / math.sqrt(2)
    expected[..., 4, 4] = 0.1
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # λ = 2.3 (the paper's): 2.3 / √2 > 1 clips, so the block's edge pixels are zeroed too.
    out = local_gradient_smoothing(x, window=3, overlap=0, threshold=0.1, smoothing_factor=2.3)
    expected[..., 0, 1] = expected[..., 1, 0] = 0.0
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # A higher threshold keeps no window: the image passes unchanged.
    out = local_gradient_smoothing(x, window=3, overlap=0, threshold=0.3, smoothing_factor=2.3)
    torch.testing.assert_close(out, x)


def test_window_grid_reaches_the_far_edge() -> None:
    assert window_starts(7, 3, 3) == [0, 3, 4]
    assert window_starts(6, 3, 3) == [0, 3]
    assert window_starts(32, 5, 3) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]


def test_naive_and_bpda_share_forward_and_bpda_is_straight_through() -> None:
    torch.manual_seed(0)
    clf = tiny_cnn(4).eval()
    x, y = make_toy_images(4, image_size=16, seed=1)
    lgs = LocalGradientSmoothing(window=4, overlap=1)
    grads, outs = {}, {}
    for mode in ("naive", "bpda"):
        xi = x.clone().requires_grad_(True)
        out = TransformedClassifier(clf, lgs, mode)(xi)
        nn.functional.cross_entropy(out, y).backward()
        outs[mode], grads[mode] = out.detach(), xi.grad
    assert torch.equal(outs["naive"], outs["bpda"])
    smoothed = lgs(x).requires_grad_(True)
    nn.functional.cross_entropy(clf(smoothed), y).backward()
    torch.testing.assert_close(grads["bpda"], smoothed.grad)  # the identity through LGS
    assert torch.isfinite(grads["naive"]).all() and not torch.allclose(grads["naive"], grads["bpda"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 1}, "window"),
        ({"window": 4, "overlap": 4}, "overlap"),
        ({"threshold": 1.5}, "threshold"),
        ({"smoothing_factor": 0}, "smoothing_factor"),
        ({"train_on_smoothed": "yes"}, "train_on_smoothed"),
    ],
)
def test_bad_options(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        LocalGradientSmoothingDefense(**kwargs)


def test_window_larger_than_images_is_refused_in_one_line() -> None:
    defense = LocalGradientSmoothingDefense(window=20, overlap=2)
    with pytest.raises(ConfigError, match=r"window 20 is larger than the 16x16 images") as err:
        defense.check_image_shape((3, 16, 16))
    assert "\n" not in str(err.value)


def test_defense_reuses_f_or_trains_on_smoothed_images() -> None:
    x, y = make_toy_images(96, image_size=16, seed=0)
    built = []

    def make_model(c: int) -> nn.Module:
        built.append(c)
        return tiny_cnn(4, in_channels=c)

    f = tiny_cnn(4).eval()
    reused = LocalGradientSmoothingDefense().fit(make_model, x, y, TrainBudget(epochs=1), base_model=f)
    assert built == [] and reused.info["reuses_undefended_model"] and reused.model.classifier is f
    assert reused.view_names == ("naive", "bpda") and not reused.certifiable
    trained = LocalGradientSmoothingDefense(train_on_smoothed=True).fit(
        make_model, x, y, TrainBudget(epochs=1), base_model=f
    )
    assert built == [3] and trained.model.classifier is not f
