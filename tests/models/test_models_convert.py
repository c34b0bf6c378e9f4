"""The generic 2D→3D converter: layer rules, errors naming the layer, depth kernels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.errors import ConfigError
from voldefense.models.convert import Converted3d, convert_to_3d
from voldefense.models.factory import build_model
from voldefense.testing import tiny_cnn

BACKBONES = ["vgg16", "resnet50", "inception_v3", "efficientnet_b0"]


def test_user_model_converts_with_standard_layers():
    f = tiny_cnn(5, width=4)
    g = convert_to_3d(f)
    assert isinstance(g.net[0], nn.Conv3d) and g.net[0].kernel_size == (3, 3, 3)
    assert g.net[0].padding == (1, 1, 1)
    assert isinstance(g.net[2], nn.MaxPool3d) and g.net[2].kernel_size == (1, 2, 2)
    assert g(torch.rand(2, 3, 6, 16, 16)).shape == (2, 6, 5)
    # The input model is not modified.
    assert isinstance(f[0], nn.Conv2d)


def test_parameter_names_follow_the_2d_model():
    f = build_model("efficientnet_b0", num_classes=4, width=0.125)
    g = convert_to_3d(f)
    assert [f"net.{n}" for n, _ in f.named_parameters()] == [n for n, _ in g.named_parameters()]


def test_depthwise_grouped_and_asymmetric_convolutions_are_kept():
    g = build_model("efficientnet_b0", dims=3, num_classes=4, width=0.25)
    depthwise = [m for m in g.modules() if isinstance(m, nn.Conv3d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    g = build_model("inception_v3", dims=3, num_classes=4, width=0.125)
    assert any(
        m.kernel_size == (3, 1, 7) and m.padding == (1, 0, 3) for m in g.modules() if isinstance(m, nn.Conv3d)
    )


def test_centre_slice_initialisation_makes_g_equal_f_per_patch():
    torch.manual_seed(0)
    f = build_model("resnet50", num_classes=6, width=0.125).eval()
    g = convert_to_3d(f, depth_kernel=3).eval()
    volume = torch.rand(2, 3, 4, 16, 16)
    per_patch = torch.stack([f(volume[:, :, n]) for n in range(4)], dim=1)
    assert torch.allclose(g(volume), per_patch, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depth_kernel, reach", [(1, False), (3, True), ("full", True)])
def test_depth_kernel_controls_which_patches_interact(depth_kernel, reach):
    torch.manual_seed(0)
    g = convert_to_3d(tiny_cnn(3, width=4), depth_kernel=depth_kernel, num_patches=6).eval()
    with torch.no_grad():
        for m in g.modules():  # make the cross-patch weights non-zero (they start at zero)
            if isinstance(m, nn.Conv3d):
                m.weight.normal_()
    volume = torch.rand(1, 3, 6, 8, 8, requires_grad=True)
    g(volume)[0, 0].sum().backward()
    grad_per_patch = volume.grad.abs().sum(dim=(0, 1, 3, 4))
    assert grad_per_patch[0] > 0
    # Two 3-deep convolutions reach 2 patches away; the full kernel reaches everything; dk=1 nothing.
    assert bool(grad_per_patch[1] > 0) == reach
    assert bool(grad_per_patch[5] > 0) == (depth_kernel == "full")


def test_full_depth_kernel_shape():
    g = convert_to_3d(tiny_cnn(3, width=4), depth_kernel="full", num_patches=5)
    assert g.net[0].kernel_size == (9, 3, 3) and g.net[0].padding == (4, 1, 1)
    assert g(torch.rand(2, 3, 5, 8, 8)).shape == (2, 5, 3)


def test_pool_depth_shrinks_the_patch_axis_until_it_cannot():
    g = convert_to_3d(tiny_cnn(3, width=4), pool_depth=True)
    assert g(torch.rand(2, 3, 8, 16, 16)).shape == (2, 4, 3)
    assert g(torch.rand(2, 3, 1, 16, 16)).shape == (2, 1, 3)  # depth 1: pools space only
    g = build_model("inception_v3", dims=3, num_classes=3, width=0.125, stem="imagenet", pool_depth=True)
    # The two stem max pools (window 3, stride 2) take 8 patches to 3, then 1; the reduction blocks' pool
    # branches keep the depth (otherwise the concatenation with their convolution branches would fail).
    with torch.no_grad():
        assert g.eval()(torch.rand(1, 3, 8, 139, 139)).shape == (1, 1, 3)


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.gamma


class _WSConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x)


@pytest.mark.parametrize(
    "layer, type_name",
    [(nn.Conv1d(4, 4, 3), "Conv1d"), (_Scaled(), "_Scaled"), (_WSConv(4, 4, 3), "_WSConv"),
     (nn.Upsample(scale_factor=2), "Upsample"), (nn.LayerNorm(4), "LayerNorm")],
)  # fmt: skip
def test_unconvertible_layer_is_named_by_path_and_type(layer, type_name):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), layer))
    with pytest.raises(ConfigError, match=rf"'1\.1' \({type_name}"):
        convert_to_3d(model)


def test_partial_flatten_is_rejected():
    with pytest.raises(ConfigError, match="Flatten"):
        convert_to_3d(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(2)))


def test_parameter_free_custom_layer_is_kept():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), Swish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    g = convert_to_3d(model, depth_kernel=1)
    assert isinstance(g.net[1], Swish)
    assert g(torch.rand(1, 3, 3, 8, 8)).shape == (1, 3, 2)


def test_group_norm_is_kept_and_spans_the_patches():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    g = convert_to_3d(model, depth_kernel=1)
    assert isinstance(g.net[1], nn.GroupNorm) and isinstance(g, Converted3d)
    volume = torch.rand(1, 3, 3, 8, 8)
    changed = volume.clone()
    changed[:, :, 0] += 1.0
    # On the Conv3d path GroupNorm's statistics span every patch: changing patch 0 moves the others' features.
    assert not torch.allclose(g(volume)[:, 1:], g(changed)[:, 1:])


def test_rejects_non_volume_input():
    g = convert_to_3d(tiny_cnn(3, width=4))
    with pytest.raises(ValueError, match="volumes"):
        g(torch.rand(2, 3, 16, 16))


def test_depth_init_draws_off_centre_taps_at_a_scale_of_the_centre_slice():
    torch.manual_seed(0)
    model = build_model("vgg16", dims=2, num_classes=3, width=0.125, stem="small")
    zero = convert_to_3d(model, depth_kernel=3)
    torch.manual_seed(1)
    drawn = convert_to_3d(model, depth_kernel=3, depth_init=0.5)
    conv_zero = next(m for m in zero.modules() if isinstance(m, nn.Conv3d))
    conv = next(m for m in drawn.modules() if isinstance(m, nn.Conv3d))
    torch.testing.assert_close(conv.weight[:, :, 1], conv_zero.weight[:, :, 1])  # the centre is f's kernel
    assert conv_zero.weight[:, :, 0].abs().max() == 0
    ratio = float(conv.weight[:, :, 0].detach().std() / conv.weight[:, :, 1].detach().std())
    assert 0.35 < ratio < 0.65
    with pytest.raises(ConfigError, match="depth_init"):
        convert_to_3d(model, depth_init=-1)
