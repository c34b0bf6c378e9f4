"""Blind digital watermarking: saliency mask (hand-computed with a linear model), inpainting, views."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.defenses.base import TrainBudget
from voldefense.defenses.preprocessing import TransformedClassifier
from voldefense.defenses.watermarking import (
    DigitalWatermarkingDefense,
    SaliencyInpainting,
    inpaint,
    saliency_mask,
)
from voldefense.errors import ConfigError
from voldefense.testing import make_toy_images, tiny_cnn


def linear_model() -> nn.Module:
    """Logit 0 = sum of a 3x3 block (rows/cols 1-3) plus pixel (5,5); logit 1 = 0. Its saliency for class 0 is
    |w_0|: 1 on the block and the lone pixel, 0 elsewhere."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 2, bias=False))
    w = torch.zeros(2, 1, 6, 6)
    w[0, 0, 1:4, 1:4] = 1.0
    w[0, 0, 5, 5] = 1.0
    with torch.no_grad():
        model[1].weight.copy_(w.reshape(2, 36))
    return model.eval()


def test_hand_computed_case() -> None:
    """Threshold 0.4 marks the block and the lone pixel; erosion (radius 1) keeps only the block's centre (the
    lone pixel has unset neighbours); dilation (radius 1) grows it back to the block. The block (a 0.9 'patch')
    is inpainted from its 0.25 surroundings, so f sees a constant 0.25 image: logits (10 · 0.25, 0)."""
    model = linear_model()
    x = torch.full((1, 1, 6, 6), 0.25)
    x[..., 1:4, 1:4] = 0.9
    dw = SaliencyInpainting(model, threshold=0.4, erosion=1, dilation=1, smooth_steps=4)
    expected_mask = torch.zeros(1, 1, 6, 6)
    expected_mask[..., 1:4, 1:4] = 1.0
    assert torch.equal(dw.mask(x), expected_mask)
    torch.testing.assert_close(dw(x), torch.full_like(x, 0.25))
    with torch.no_grad():
        logits = TransformedClassifier(model, dw, "naive")(x)
    torch.testing.assert_close(logits, torch.tensor([[2.5, 0.0]]))


def test_mask_morphology() -> None:
    sal = torch.zeros(1, 1, 6, 6)
    sal[..., 0, 5] = 1.0  # lone salient pixel in a corner: removed by erosion
    sal[..., 3:6, 0:3] = 0.8  # dense 3x3 region on the border: kept
    mask = saliency_mask(sal, 0.5, erosion=1, dilation=1)
    assert mask[..., 0, 5].item() == 0 and mask[..., 3:6, 0:3].eq(1).all()
    assert saliency_mask(sal, 0.9, erosion=0, dilation=0).sum().item() == 1  # only the lone pixel passes 0.9


def test_inpaint_onion_peel_and_diffusion() -> None:
    """One row [a ? ? ? b]: ring 1 copies each known neighbour, ring 2 averages the two filled ones."""
    a, b = 0.2, 0.8
    x = torch.tensor([[[[a, 0.0, 0.0, 0.0, b]]]])
    mask = torch.tensor([[[[0.0, 1.0, 1.0, 1.0, 0.0]]]])
    torch.testing.assert_close(inpaint(x, mask, smooth_steps=0), torch.tensor([[[[a, a, (a + b) / 2, b, b]]]]))
    # Diffusion steps relax the fill towards the harmonic (linear) interpolation, known pixels untouched.
    relaxed = inpaint(x, mask, smooth_steps=200)
    torch.testing.assert_close(relaxed, torch.tensor([[[[a, 0.35, 0.5, 0.65, b]]]]), atol=1e-3, rtol=0)
    # Centre of a 3x3: the mean of its 8 neighbours.
    g = torch.rand(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(1, 1, 3, 3)
    hole[..., 1, 1] = 1.0
    centre = (g.sum((-2, -1)) - g[..., 1, 1]) / 8
    torch.testing.assert_close(inpaint(g, hole, smooth_steps=0)[..., 1, 1], centre)
    torch.testing.assert_close(inpaint(g, torch.ones(1, 1, 3, 3)), torch.full_like(g, 0.5))  # nothing known


def test_naive_gradient_skips_the_mask_and_bpda_is_straight_through() -> None:
    model = linear_model()
    x = torch.full((1, 1, 6, 6), 0.25)
    x[..., 1:4, 1:4] = 0.9
    dw = SaliencyInpainting(model, threshold=0.4, erosion=1, dilation=1)
    grads = {}
    for mode in ("naive", "bpda"):
        xi = x.clone().requires_grad_(True)
        TransformedClassifier(model, dw, mode)(xi)[:, 0].sum().backward()
        grads[mode] = xi.grad
    assert grads["naive"][..., 1:4, 1:4].eq(0).all()  # masked pixels are replaced: no naive gradient
    torch.testing.assert_close(grads["bpda"], model[1].weight[0].reshape(1, 1, 6, 6))  # f's gradient


def test_bad_options_and_fit() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        DigitalWatermarkingDefense(threshold=0.0)
    with pytest.raises(ConfigError, match="erosion"):
        DigitalWatermarkingDefense(erosion=-1)
    x, y = make_toy_images(32, image_size=16, seed=0)
    f = tiny_cnn(4).eval()
    defended = DigitalWatermarkingDefense().fit(
        lambda c: tiny_cnn(4, in_channels=c), x, y, TrainBudget(epochs=1), base_model=f
    )
    assert defended.info["reuses_undefended_model"] and defended.view_names == ("naive", "bpda")
    with torch.no_grad():
        assert torch.equal(defended.model(x[:4]), defended.model_for_attack("bpda")(x[:4]))
