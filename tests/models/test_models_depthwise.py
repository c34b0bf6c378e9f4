"""DepthwiseConv3d: the depthwise 3D convolution computed as 2D taps equals nn.Conv3d, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.models.convert import check_depth_kernel, convert_to_3d
from voldefense.models.factory import build_model
from voldefense.models.layers import DepthwiseConv3d
from voldefense.testing import tiny_cnn


def _pair_of_convs(channels: int, dk: int, pad: int, k: int, stride: int, bias: bool, dilation: int = 1):
    options = dict(
        kernel_size=(dk, k, k),
        stride=(1, stride, stride),
        padding=(pad, k // 2 * dilation, k // 2 * dilation),
        dilation=(1, dilation, dilation),
        groups=channels,
        bias=bias,
        dtype=torch.float64,
    )
    reference = nn.Conv3d(channels, channels, **options)
    taps = DepthwiseConv3d(channels, channels, **options)
    taps.load_state_dict(reference.state_dict())
    taps.decompose = True
    return reference, taps


def _forward_backward(conv: nn.Module, x: torch.Tensor, upstream: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = conv(x)
    out.backward(upstream)
    grads = [x.grad] + [p.grad for p in conv.parameters()]
    return out.detach(), grads


@pytest.mark.parametrize("depth_kernel", [3, 5, "full"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size, depth", [((9, 7), 4), ((8, 8), 5), ((5, 6), 1)])
@pytest.mark.parametrize("bias", [False, True])
def test_taps_equal_conv3d_forward_and_backward(depth_kernel, stride, size, depth, bias):
    torch.manual_seed(0)
    dk, pad = check_depth_kernel(depth_kernel, depth)
    reference, taps = _pair_of_convs(6, dk, pad, 3, stride, bias)
    x = torch.randn(2, 6, depth, *size, dtype=torch.float64)
    out_ref = reference(x)
    upstream = torch.randn_like(out_ref)
    out_ref, grads_ref = _forward_backward(reference, x, upstream)
    out, grads = _forward_backward(taps, x, upstream)
    assert out.shape == out_ref.shape
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    assert len(grads) == len(grads_ref) == (3 if bias else 2)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pad, depth", [(0, 5), (2, 3), (4, 2)])
def test_taps_handle_depth_padding_that_changes_the_depth(pad, depth):
    # Padding other than dk // 2 (possible when the layer is built directly): some taps see no slice at all.
    torch.manual_seed(1)
    reference, taps = _pair_of_convs(3, 3, pad, 5, 1, True, dilation=2)
    x = torch.randn(1, 3, depth, 10, 10, dtype=torch.float64)
    upstream = torch.randn_like(reference(x))
    out_ref, grads_ref = _forward_backward(reference, x, upstream)
    out, grads = _forward_backward(taps, x, upstream)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-10)


def test_float32_agrees_within_float_tolerance():
    torch.manual_seed(2)
    reference = nn.Conv3d(8, 8, (3, 3, 3), padding=1, groups=8)
    taps = DepthwiseConv3d(8, 8, (3, 3, 3), padding=1, groups=8)
    taps.load_state_dict(reference.state_dict())
    x = torch.rand(4, 8, 4, 16, 16)
    torch.testing.assert_close(taps(x), reference(x), rtol=1e-5, atol=1e-5)


def test_decompose_flag_picks_the_path_per_instance_and_class():
    taps = DepthwiseConv3d(4, 4, 3, padding=1, groups=4)
    cpu = torch.zeros(1, 4, 3, 4, 4)
    # Default on CPU: the taps when autograd records (faster to train), Conv3d under no_grad (measured).
    assert DepthwiseConv3d.decompose is None and taps.uses_taps(cpu)
    with torch.no_grad():
        assert not taps.uses_taps(cpu)
    taps.weight.requires_grad_(False)
    assert not taps.uses_taps(cpu) and taps.uses_taps(cpu.clone().requires_grad_(True))
    taps.weight.requires_grad_(True)
    assert not taps.uses_taps(torch.zeros(1, 4, 3, 4, 4, device="meta"))  # unmeasured device: Conv3d
    taps.decompose = False
    assert not taps.uses_taps(cpu)
    other = DepthwiseConv3d(4, 4, 3, padding=1, groups=4)
    assert other.uses_taps(cpu)  # the instance flag does not leak to other instances
    try:
        DepthwiseConv3d.decompose = False
        assert not other.uses_taps(cpu)
    finally:
        DepthwiseConv3d.decompose = None


def test_non_depthwise_configurations_are_refused():
    with pytest.raises(ValueError, match="groups == in_channels"):
        DepthwiseConv3d(4, 8, 3, groups=4)
    with pytest.raises(ValueError, match="depth stride"):
        DepthwiseConv3d(4, 4, 3, stride=2, groups=4)


def test_converter_uses_it_for_depthwise_kernels_spanning_patches_only():
    g = build_model("efficientnet_b0", dims=3, num_classes=4, width=0.25)
    depthwise = [m for m in g.modules() if isinstance(m, nn.Conv3d) and m.groups > 1]
    assert depthwise and all(type(m) is DepthwiseConv3d for m in depthwise)
    assert all(type(m) is nn.Conv3d for m in g.modules() if isinstance(m, nn.Conv3d) and m.groups == 1)
    g1 = build_model("efficientnet_b0", dims=3, num_classes=4, width=0.25, depth_kernel=1)
    assert not any(isinstance(m, DepthwiseConv3d) for m in g1.modules())
    plain = convert_to_3d(tiny_cnn(3, width=4))
    assert not any(isinstance(m, DepthwiseConv3d) for m in plain.modules())


@pytest.mark.parametrize("depth_kernel", [3, "full"])
def test_converted_efficientnet_is_the_same_network_on_both_paths(depth_kernel):
    torch.manual_seed(3)
    options = dict(num_classes=5, width=0.125, stochastic_depth=0.0, dropout=0.0)
    g = build_model("efficientnet_b0", dims=3, depth_kernel=depth_kernel, num_patches=4, **options)
    f = build_model("efficientnet_b0", dims=2, **options)
    assert sum(p.numel() for p in g.parameters()) == sum(p.numel() for p in f.parameters()) + (
        check_depth_kernel(depth_kernel, 4)[0] - 1
    ) * sum(m.weight.numel() for m in f.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        for m in g.modules():  # make the cross-patch taps non-zero (they start at zero)
            if isinstance(m, DepthwiseConv3d):
                m.weight.normal_(std=0.3)
    g.eval()
    volume = torch.rand(2, 3, 4, 16, 16, requires_grad=True)
    outputs = {}
    try:
        for decompose in (False, True):
            DepthwiseConv3d.decompose = decompose
            out = g(volume)
            outputs[decompose] = (out, torch.autograd.grad(out.sum(), volume)[0])
    finally:
        DepthwiseConv3d.decompose = None
    (conv3d, grad_conv3d), (taps, grad_taps) = outputs[False], outputs[True]
    torch.testing.assert_close(taps, conv3d, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad_taps, grad_conv3d, rtol=1e-4, atol=1e-5)
    # The state dict is that of plain Conv3d layers: a checkpoint loads into a build with the flag either way.
    state = g.state_dict()
    g.load_state_dict(state)
    assert all(state[n].shape == p.shape for n, p in g.named_parameters())
