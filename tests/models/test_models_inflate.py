"""Inflation: g's 3D network initialised from f's trained 2D weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.errors import ConfigError, UsageError
from voldefense.models.convert import convert_to_3d
from voldefense.models.defended import DefendedClassifier
from voldefense.models.factory import build_model
from voldefense.models.inflate import inflate_into, inflate_state_dict, inflate_tensor
from voldefense.testing import fit, make_toy_images, perturb_weights, tiny_cnn
from voldefense.volumizer import Volumizer


def _per_patch(f: nn.Module, volume: torch.Tensor) -> torch.Tensor:
    return torch.stack([f(volume[:, :, n]) for n in range(volume.shape[2])], dim=1)


def test_depth_kernel_1_inflated_g_is_f_on_each_patch():
    """The issue's test: a trained f, an inflated not-yet-fine-tuned g; g's per-patch logits are f per patch."""
    torch.manual_seed(0)
    x, y = make_toy_images(128, seed=0)
    f = tiny_cnn(4, width=6)
    fit(f, x, y, epochs=2)
    torch.manual_seed(123)  # g's own initialisation differs from f's
    g3d = convert_to_3d(tiny_cnn(4, width=6), depth_kernel=1).eval()
    inflate_into(g3d, f)
    g = DefendedClassifier(Volumizer(patch_size=16, metric="entropy"), g3d).eval()
    images = x[:5]
    volume, _ = g.volumizer.volumize(images)
    with torch.no_grad():
        assert torch.allclose(g.patch_logits(images), _per_patch(f, volume), atol=1e-5)


@pytest.mark.parametrize("depth_kernel", [1, 3, "full"])
def test_centre_rule_copies_f_per_patch_for_every_depth_kernel(depth_kernel):
    f = perturb_weights(build_model("resnet50", num_classes=5, width=0.125), 0.1)
    g3d = build_model("resnet50", dims=3, num_classes=5, width=0.125, depth_kernel=depth_kernel, num_patches=4)
    inflate_into(g3d, f.state_dict(), rule="centre")
    volume = torch.rand(2, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(g3d.eval()(volume), _per_patch(f, volume), atol=1e-4)


def test_spread_rule_is_f_on_a_volume_of_one_repeated_patch():
    f = perturb_weights(tiny_cnn(3, width=4), 0.1)
    g3d = convert_to_3d(tiny_cnn(3, width=4), depth_kernel=3).eval()
    state = inflate_state_dict(f.state_dict(), g3d, rule="spread")
    kernel = state["net.0.weight"]
    assert kernel.shape == (4, 3, 3, 3, 3)
    assert torch.allclose(kernel.sum(2), f[0].weight)  # the 2D kernel spread evenly over depth
    g3d.load_state_dict(state)
    patch = torch.rand(2, 3, 1, 16, 16)
    volume = patch.expand(2, 3, 5, 16, 16)  # I3D's "boring video": one frame repeated
    with torch.no_grad():
        out = g3d(volume)
        # The inner patches see dk identical neighbours; the edge ones see zero padding.
        assert torch.allclose(out[:, 2], f(patch[:, :, 0]), atol=1e-5)


def test_inflation_and_fine_tuning_update_the_cross_patch_weights():
    f = perturb_weights(tiny_cnn(3, width=4), 0.1)
    g3d = inflate_into(convert_to_3d(tiny_cnn(3, width=4), depth_kernel=3), f).train()
    volume = torch.rand(2, 3, 4, 16, 16)
    g3d(volume).sum().backward()
    grad = g3d.net[0].weight.grad
    assert grad is not None and grad[:, :, 0].abs().sum() > 0  # off-centre slices learn from zero


def test_weights_of_another_architecture_are_one_clear_error():
    g3d = convert_to_3d(tiny_cnn(3, width=4), depth_kernel=1)
    with pytest.raises(ConfigError, match="g_init: f's weights do not match g's network"):
        inflate_into(g3d, tiny_cnn(3, width=4).extend([nn.Linear(3, 3)]))
    with pytest.raises(ConfigError, match="cannot inflate a tensor of shape"):
        inflate_tensor(torch.zeros(4, 3, 3, 3), torch.Size((4, 3, 3, 5, 5)))
    with pytest.raises(UsageError, match="inflation rule"):
        inflate_state_dict(tiny_cnn(3, width=4).state_dict(), g3d, rule="middle")  # type: ignore[arg-type]
