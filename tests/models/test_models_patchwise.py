"""g at depth kernel 1 without depth pooling: f run on each patch as it is (no conversion), for any network."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from user_networks import FACTORIES

from voldefense.errors import ConfigError, UsageError
from voldefense.evaluation.certify import certify_defended, certify_majority_vote, majority_vote_refusal
from voldefense.models.convert import Converted3d, convert_to_3d
from voldefense.models.defended import DefendedClassifier
from voldefense.models.factory import build_model
from voldefense.models.patchwise import Patchwise
from voldefense.volumizer import Volumizer

BACKBONES = ["vgg16", "resnet50", "inception_v3", "efficientnet_b0"]
USER = sorted(FACTORIES)


def _per_patch(f: nn.Module, volume: torch.Tensor) -> torch.Tensor:
    return torch.stack([f(volume[:, :, n]) for n in range(volume.shape[2])], dim=1)


@pytest.mark.parametrize("name", USER)
def test_networks_the_converter_refuses_work_as_g(user_backbones, name):
    torch.manual_seed(0)
    f = FACTORIES[name](num_classes=5, width=0.25)
    with pytest.raises(ConfigError, match="LayerNorm|MultiheadAttention|holds its own parameters"):
        convert_to_3d(f, depth_kernel=1)
    g = build_model(name, dims=3, num_classes=5, width=0.25, depth_kernel=1).eval()
    assert isinstance(g, Patchwise) and g.patches_independent
    g.net.load_state_dict(f.state_dict())
    volume = torch.rand(2, 3, 4, 16, 16)
    assert torch.allclose(g(volume), _per_patch(f.eval(), volume), atol=1e-5)
    g.train()
    g(volume).square().sum().backward()
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("name", USER)
def test_perturbing_one_patch_changes_only_its_logits(user_backbones, name):
    """The premise of the certificate, checked on networks that normalise (LayerNorm) and attend."""
    torch.manual_seed(0)
    g = build_model(name, dims=3, num_classes=5, width=0.25, depth_kernel=1).eval()
    volume = torch.rand(3, 3, 4, 16, 16)
    with torch.no_grad():
        clean = g(volume)
        for patch in range(4):
            changed = volume.clone()
            changed[:, :, patch] = torch.rand_like(changed[:, :, patch])
            logits = g(changed)
            others = [n for n in range(4) if n != patch]
            assert torch.allclose(logits[:, others], clean[:, others], rtol=0, atol=1e-6)
            assert (logits[:, patch] - clean[:, patch]).abs().max() > 1e-3


def test_the_perturbation_check_sees_patches_that_interact():
    # The same check fails where patches do interact: a Conv3d g with depth kernel 3 and mixing weights.
    g = convert_to_3d(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    with torch.no_grad():
        g.net[0].weight.normal_()
        volume = torch.rand(1, 3, 4, 8, 8)
        changed = volume.clone()
        changed[:, :, 0] += 1.0
        assert not torch.allclose(g(volume)[:, 1:], g(changed)[:, 1:], atol=1e-6)


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("train", [False, True])
def test_builtins_equal_the_conv3d_path_with_the_same_weights(name, train):
    """f run per patch computes what the converted Conv3d network with 1-deep kernels computes (the fold path
    before this change was tested equal to it too), in train mode including batch-norm running statistics."""
    options = {"stochastic_depth": 0.0} if name == "efficientnet_b0" else {}
    torch.manual_seed(0)
    conv3d = build_model(name, dims=3, num_classes=5, width=0.125, depth_kernel=1, fold=False, **options)
    g = build_model(name, dims=3, num_classes=5, width=0.125, depth_kernel=1, **options)
    assert isinstance(conv3d, Converted3d) and isinstance(g, Patchwise)
    g.load_state_dict(conv3d.state_dict())  # 1-deep Conv3d kernels are squeezed on load
    conv3d.train(train)
    g.train(train)
    volume = torch.rand(3, 3, 4, 16, 16)
    torch.manual_seed(1)
    folded = g(volume)
    torch.manual_seed(1)
    direct = conv3d(volume)
    scale = float(direct.detach().abs().max())
    assert torch.allclose(folded, direct, atol=1e-5 * scale, rtol=1e-4)
    if train:  # batch-norm running statistics updated alike
        for a, b in zip(g.buffers(), conv3d.buffers(), strict=True):
            assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4)


def test_parameters_are_f_s_under_net():
    torch.manual_seed(0)
    f = build_model("resnet50", num_classes=3, width=0.125)
    g = build_model("resnet50", dims=3, num_classes=3, width=0.125, depth_kernel=1)
    assert [f"net.{n}" for n, _ in f.named_parameters()] == [n for n, _ in g.named_parameters()]
    assert all(p.shape == q.shape for p, q in zip(f.parameters(), g.parameters(), strict=True))


def test_fold_option_chooses_the_path_and_is_validated():
    kw = dict(num_classes=3, width=0.125)
    assert isinstance(build_model("vgg16", dims=3, depth_kernel=1, fold=True, **kw), Patchwise)
    assert isinstance(build_model("vgg16", dims=3, depth_kernel=1, fold=False, **kw), Converted3d)
    assert isinstance(build_model("vgg16", dims=3, depth_kernel=3, **kw), Converted3d)
    assert isinstance(build_model("vgg16", dims=3, depth_kernel=1, pool_depth=True, **kw), Converted3d)
    with pytest.raises(ConfigError, match="fold=True .* depth_kernel=1"):
        build_model("vgg16", dims=3, depth_kernel=3, fold=True, **kw)
    with pytest.raises(ConfigError, match="fold must be"):
        build_model("vgg16", dims=3, depth_kernel=1, fold="yes", **kw)
    assert not isinstance(build_model("vgg16", dims=2, fold=False, **kw), Patchwise | Converted3d)


def test_patchwise_rejects_bad_inputs_and_outputs():
    g = Patchwise(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)))
    with pytest.raises(ValueError, match="volumes"):
        g(torch.rand(2, 3, 4, 4))

    class TwoOutputs(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    with pytest.raises(ValueError, match="return logits"):
        Patchwise(TwoOutputs())(torch.rand(1, 3, 2, 4, 4))


def test_certification_is_offered_by_the_built_model_only_where_patches_are_independent(user_backbones):
    torch.manual_seed(0)
    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])

    def g(aggregation="majority_vote", **options):
        backbone = build_model("user_convnext", dims=3, num_classes=3, width=0.25, **options)
        return DefendedClassifier(Volumizer(16, metric="entropy"), backbone, aggregation=aggregation)

    certifiable = g(depth_kernel=1)
    assert certifiable.patches_independent and majority_vote_refusal(certifiable) == ""
    certified = certify_defended(certifiable, images, labels, [1, 8], batch_size=3)
    assert certifiable.training  # its mode is restored
    with torch.no_grad():
        expected = certify_majority_vote(certifiable.eval().patch_logits(images), labels, 8, 16, 32)
    assert torch.equal(certified[8], expected) and certified[1].shape == (4,)

    conv3d = DefendedClassifier(
        Volumizer(16), build_model("resnet50", dims=3, num_classes=3, width=0.0625, depth_kernel=1, fold=False),
        aggregation="majority_vote",
    )
    for model, reason in [(conv3d, "not provably independent"), (g("mean_logits", depth_kernel=1), "mean_logits")]:
        assert reason in majority_vote_refusal(model)
        with pytest.raises(UsageError, match=reason) as err:
            certify_defended(model, images, labels, [1])
        assert "\n" not in str(err.value)
    assert "not a volumized classifier" in majority_vote_refusal(nn.Linear(2, 2))
