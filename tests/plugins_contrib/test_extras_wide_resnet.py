"""wide_resnet: 2D shapes for both stems, torchvision-style fidelity (WRN-28-10's published parameter count),
the factory convention shared with the built-in backbones, and the generic 2D→3D conversion."""

from __future__ import annotations

import pytest
import torch

from voldefense.errors import ConfigError


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("stem", "size"), [("small", 16), ("small", 32), ("imagenet", 16), ("imagenet", 64)])
def test_2d_forward_shapes(extras_registry, stem, size):
    model = extras_registry.get("backbone", "wide_resnet").build(num_classes=7, width=0.25, stem=stem)
    model.eval()
    assert model(torch.rand(2, 3, size, size)).shape == (2, 7)


def test_in_channels_and_depth_options(extras_registry):
    spec = extras_registry.get("backbone", "wide_resnet")
    gray = spec.build(num_classes=3, in_channels=1, width=0.25, depth=10, widen_factor=2).eval()
    assert gray(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    assert _params(spec.build(num_classes=3, depth=22, width=0.25)) > _params(
        spec.build(num_classes=3, width=0.25)
    )


def test_published_parameter_counts():
    from voldefense_extras.wide_resnet import wide_resnet

    # WRN-28-10 on CIFAR-10: 36,479,194 parameters in the reference implementations (36.5M in the paper).
    assert _params(wide_resnet(10, depth=28, widen_factor=10)) == 36_479_194
    assert _params(wide_resnet(10, depth=16, widen_factor=8)) == 10_961_370  # paper: 11.0M


def test_gradients_reach_the_input(extras_registry):
    model = extras_registry.get("backbone", "wide_resnet").build(num_classes=4, width=0.25, dropout=0.3)
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_options_are_config_errors(extras_registry):
    spec = extras_registry.get("backbone", "wide_resnet")
    with pytest.raises(ConfigError, match="depth"):
        spec.build(num_classes=3, depth=15)
    with pytest.raises(ConfigError, match="stem"):
        spec.build(num_classes=3, stem="tiny")
    with pytest.raises(ConfigError, match="widht"):
        spec.build(num_classes=3, widht=0.5)


@pytest.mark.parametrize("depth_kernel", [1, 3])
def test_generic_converter_gives_f_on_every_patch_at_initialisation(extras_registry, depth_kernel):
    """converter=None means voldefense's generic converter; its 3D kernels start as the 2D kernel in the
    centre depth slice, so the fresh g must compute f on each patch separately."""
    convert = pytest.importorskip("voldefense.models.convert", reason="generic converter not available")
    spec = extras_registry.get("backbone", "wide_resnet")
    assert spec.converter is None
    f = spec.build(num_classes=5, width=0.25, widen_factor=2).eval()
    g = convert.convert_to_3d(f, depth_kernel=depth_kernel).eval()
    volume = torch.rand(2, 3, 4, 16, 16)  # (B, C, N, ph, pw): 4 patches of 16x16
    with torch.no_grad():
        per_patch = g(volume)
        expected = torch.stack([f(volume[:, :, i]) for i in range(4)], dim=1)
    assert per_patch.shape == (2, 4, 5)
    assert torch.allclose(per_patch, expected, atol=1e-4)


def test_converted_3d_forward_shapes(extras_registry, monkeypatch):
    """The public path a user takes: build_model(..., dims=3) with the generic converter (converter=None)."""
    factory = pytest.importorskip("voldefense.models.factory", reason="generic converter not available")
    assert extras_registry.get("backbone", "wide_resnet").converter is None
    monkeypatch.setattr("voldefense.registry._cached_registry", lambda strict: extras_registry)
    model_3d = factory.build_model("wide_resnet", dims=3, num_classes=5, width=0.25, widen_factor=2).eval()
    volume = torch.rand(2, 3, 4, 16, 16)  # (B, C, N, ph, pw): 4 patches of 16x16
    logits = model_3d(volume)
    assert logits.dim() == 3 and logits.shape[0] == 2 and logits.shape[2] == 5
    assert 1 <= logits.shape[1] <= 4
    model_2d = factory.build_model("wide_resnet", dims=2, num_classes=5, width=0.25, widen_factor=2)
    assert _params(model_3d) > _params(model_2d)  # 3x3 kernels became 3x3x3 (default depth_kernel=3)
