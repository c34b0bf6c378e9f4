"""The generic 2D→3D converter: layer rules, errors naming the layer, depth kernels, the folded fast path."""

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
    g = convert_to_3d(f, depth_kernel=3, fold=False).eval()
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


def test_parameter_free_custom_layer_is_kept_but_not_folded():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), Swish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    g = convert_to_3d(model, depth_kernel=1)
    assert not g.fold
    assert g(torch.rand(1, 3, 3, 8, 8)).shape == (1, 3, 2)
    with pytest.raises(ConfigError, match="fold=True"):
        convert_to_3d(model, depth_kernel=1, fold=True)


def test_group_norm_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert not convert_to_3d(model, depth_kernel=1).fold
    assert convert_to_3d(model, depth_kernel=1).net[1] is not None


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("train", [False, True])
def test_folded_path_equals_conv3d_path(name, train):
    options = {"stochastic_depth": 0.0} if name == "efficientnet_b0" else {}
    torch.manual_seed(0)
    g = build_model(name, dims=3, num_classes=5, width=0.125, depth_kernel=1, **options)
    assert isinstance(g, Converted3d) and g.fold
    g.train(train)
    volume = torch.rand(3, 3, 4, 16, 16)
    torch.manual_seed(1)
    folded = g(volume)
    stats_folded = [b.clone() for b in g.buffers()]
    g.fold = False
    if train:  # undo the first call's running-statistics update, so both paths see the same state
        for buffer, saved in zip(g.buffers(), _initial_buffers(name, options), strict=True):
            buffer.copy_(saved)
    torch.manual_seed(1)
    direct = g(volume)
    scale = direct.detach().abs().max()
    assert torch.allclose(folded, direct, atol=1e-5 * float(scale), rtol=1e-4)
    if train:  # batch-norm running statistics updated identically (and in place) on both paths
        for a, b in zip(stats_folded, g.buffers(), strict=True):
            assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4)


def _initial_buffers(name, options):
    torch.manual_seed(0)
    g = build_model(name, dims=3, num_classes=5, width=0.125, depth_kernel=1, **options)
    return [b.clone() for b in g.buffers()]


def test_folded_gradients_reach_the_3d_parameters():
    g = build_model("resnet50", dims=3, num_classes=3, width=0.125, depth_kernel=1)
    g(torch.rand(2, 3, 4, 16, 16)).sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert g.net.conv1.weight.grad.shape == g.net.conv1.weight.shape  # (out, in, 1, k, k)


def test_converted_model_is_trainable_in_state_dict_round_trip():
    g = build_model("vgg16", dims=3, num_classes=3, width=0.125, depth_kernel=1)
    h = build_model("vgg16", dims=3, num_classes=3, width=0.125, depth_kernel=1, fold=False)
    h.load_state_dict(g.state_dict())
    volume = torch.rand(2, 3, 4, 16, 16)
    assert torch.allclose(g.eval()(volume), h.eval()(volume), atol=1e-5)


def test_rejects_non_volume_input():
    g = convert_to_3d(tiny_cnn(3, width=4))
    with pytest.raises(ValueError, match="volumes"):
        g(torch.rand(2, 3, 16, 16))
