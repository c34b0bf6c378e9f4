"""Every built-in backbone in 2D and 3D: shapes, parameter counts, determinism, option errors."""

from __future__ import annotations

import pytest
import torch

from voldefense.errors import ConfigError, UnknownPluginError
from voldefense.models.factory import build_model

BACKBONES = ["vgg16", "resnet50", "inception_v3", "efficientnet_b0"]
TORCHVISION_PARAMS = {
    "vgg16": 138_357_544,
    "resnet50": 25_557_032,
    "inception_v3": 27_161_264,
    "efficientnet_b0": 5_288_548,
}
# Exactly (depth_kernel - 1) x the convolution weights of the 2D model; see docs/models.md.
INCREASE_DK3 = {
    "vgg16": 29_420_928,
    "resnet50": 46_909_824,
    "inception_v3": 48_614_080,
    "efficientnet_b0": 7_912_384,
}
SMALL = {"width": 0.125}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", BACKBONES)
def test_cifar_size_shapes_2d_and_3d(name):
    f = build_model(name, dims=2, num_classes=7, **SMALL).eval()
    assert f(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    g = build_model(name, dims=3, num_classes=7, **SMALL).eval()
    assert g(torch.rand(2, 3, 4, 16, 16)).shape == (2, 4, 7)


@pytest.mark.parametrize("name", BACKBONES)
def test_imagenet_size_shapes_2d_and_3d(name):
    size = 299 if name == "inception_v3" else 224
    f = build_model(name, dims=2, num_classes=5, stem="imagenet", **SMALL).eval()
    assert f(torch.rand(1, 3, size, size)).shape == (1, 5)
    # A 224px image cut into 32px patches: 49 patches through the small stem.
    g = build_model(name, dims=3, num_classes=5, **SMALL).eval()
    with torch.no_grad():
        assert g(torch.rand(1, 3, 49, 32, 32)).shape == (1, 49, 5)


@pytest.mark.parametrize("name", ["vgg16", "inception_v3"])
def test_small_stem_keeps_a_16px_patch_alive(name):
    """The issue's requirement: a 16x16 patch passes through VGG16 and InceptionV3 without collapsing."""
    f = build_model(name, dims=2, num_classes=3, **SMALL).eval()
    assert f(torch.rand(1, 3, 16, 16)).shape == (1, 3)
    with pytest.raises(RuntimeError):  # the ImageNet stem cannot take a 16px input: the option matters
        build_model(name, dims=2, num_classes=3, stem="imagenet", **SMALL).eval()(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("name", BACKBONES)
def test_full_size_2d_parameter_count_matches_torchvision(name):
    options = {"aux_logits": True} if name == "inception_v3" else {}
    # Built on the meta device: the same modules and shapes, no memory and no initialisation time.
    with torch.device("meta"):
        f = build_model(name, dims=2, num_classes=1000, stem="imagenet", width=1.0, **options)
    assert count(f) == TORCHVISION_PARAMS[name]


def test_inception_without_aux_classifier():
    with torch.device("meta"):
        f = build_model("inception_v3", dims=2, num_classes=1000, stem="imagenet")
    assert count(f) == 23_834_568  # 27,161,264 minus the auxiliary classifier (3,326,696)


@pytest.mark.parametrize("name", BACKBONES)
def test_full_size_3d_parameter_increase(name):
    options = {"aux_logits": True} if name == "inception_v3" else {}
    with torch.device("meta"):
        f = build_model(name, dims=2, num_classes=1000, stem="imagenet", **options)
        g = build_model(name, dims=3, num_classes=1000, stem="imagenet", **options)
        g1 = build_model(name, dims=3, num_classes=1000, stem="imagenet", depth_kernel=1, **options)
    conv_weights = sum(m.weight.numel() for m in f.modules() if isinstance(m, torch.nn.Conv2d))
    assert count(g) - count(f) == 2 * conv_weights == INCREASE_DK3[name]
    assert count(g1) == count(f)


def test_meta_build_counts_equal_real_build():
    real = build_model("efficientnet_b0", dims=3, num_classes=10, **SMALL)
    with torch.device("meta"):
        meta = build_model("efficientnet_b0", dims=3, num_classes=10, **SMALL)
    assert count(real) == count(meta)
    assert [n for n, _ in real.named_parameters()] == [n for n, _ in meta.named_parameters()]


@pytest.mark.parametrize("name", BACKBONES)
def test_deterministic_given_seed(name):
    x = torch.rand(2, 3, 4, 16, 16)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        g = build_model(name, dims=3, num_classes=4, **SMALL).eval()
        outs.append(g(x))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    other = build_model(name, dims=3, num_classes=4, **SMALL).eval()(x)
    assert not torch.equal(outs[0], other)


def test_width_scales_the_model():
    small = count(build_model("resnet50", num_classes=10, width=0.125))
    larger = count(build_model("resnet50", num_classes=10, width=0.25))
    assert 3 * small < larger


def test_in_channels_and_normalisation_options():
    f = build_model("resnet50", num_classes=3, in_channels=1, mean=0.4, std=0.2, **SMALL).eval()
    assert f(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    assert torch.allclose(f.normalize.mean, torch.tensor([0.4]))
    with pytest.raises(ConfigError, match="std"):
        build_model("resnet50", num_classes=3, std=[0.2, 0.0, 0.2], **SMALL)
    with pytest.raises(ConfigError, match="mean needs 1 or 3 values"):
        build_model("resnet50", num_classes=3, mean=[0.1, 0.2], **SMALL)


def test_normalisation_happens_inside_the_model():
    f = build_model("vgg16", num_classes=3, mean=0.5, std=0.25, **SMALL).eval()
    g = build_model("vgg16", num_classes=3, mean=None, std=None, **SMALL).eval()
    g.load_state_dict(
        {k: v for k, v in f.state_dict().items() if not k.startswith("normalize.")}, strict=False
    )
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(f(x), g((x - 0.5) / 0.25), atol=1e-5)


def test_unknown_options_are_named():
    with pytest.raises(ConfigError, match="colour"):
        build_model("vgg16", dims=3, num_classes=10, colour="red")
    with pytest.raises(ConfigError, match="aux_logits"):
        build_model("resnet50", num_classes=10, aux_logits=True)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"width": 0}, "width"),
        ({"stem": "large"}, "stem"),
        ({"in_channels": 0}, "in_channels"),
        ({"dims": 4}, "dims"),
        ({"num_classes": 0}, "num_classes"),
        ({"dims": 3, "depth_kernel": 2}, "depth_kernel"),
        ({"dims": 3, "depth_kernel": "full"}, "num_patches"),
        ({"dims": 3, "pool_depth": "yes"}, "pool_depth"),
    ],
)
def test_bad_values_are_config_errors(options, message):
    options = {"num_classes": 10, **options}
    with pytest.raises(ConfigError, match=message):
        build_model("resnet50", **options)


def test_unknown_backbone_suggests_close_match():
    with pytest.raises(UnknownPluginError, match="resnet50"):
        build_model("resnet5")


def test_converter_options_are_ignored_for_2d():
    f = build_model("resnet50", dims=2, num_classes=10, depth_kernel=1, pool_depth=True, **SMALL)
    assert f(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_inception_aux_logits():
    f = build_model("inception_v3", num_classes=6, stem="imagenet", aux_logits=True, **SMALL).train()
    logits, aux = f.forward_with_aux(torch.rand(2, 3, 299, 299))
    assert logits.shape == aux.shape == (2, 6)
    assert f(torch.rand(2, 3, 299, 299)).shape == (2, 6)
    with pytest.raises(ConfigError, match="aux_logits needs stem 'imagenet'"):
        build_model("inception_v3", num_classes=6, aux_logits=True)


def test_build_model_uses_the_injected_registry_or_a_spec(monkeypatch):
    from voldefense.models.factory import build_model
    from voldefense.registry import Registry

    registry = Registry(load_entry_points=False)

    def unreachable(strict):
        raise AssertionError("the process-wide registry was used although one was injected")

    monkeypatch.setattr("voldefense.registry._cached_registry", unreachable)
    by_name = build_model("resnet50", dims=2, num_classes=3, width=0.0625, registry=registry)
    by_spec = build_model(registry.get("backbone", "resnet50"), dims=3, num_classes=3, width=0.0625)
    assert by_name(torch.rand(2, 3, 16, 16)).shape == (2, 3)
    assert by_spec(torch.rand(2, 3, 2, 8, 8)).shape == (2, 2, 3)
