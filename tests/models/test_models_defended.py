"""The defended classifier g: volumizer + 3D backbone + aggregation, images in, image logits out."""

from __future__ import annotations

import pytest
import torch

from voldefense.errors import ConfigError
from voldefense.models.convert import convert_to_3d
from voldefense.models.defended import DefendedClassifier
from voldefense.models.factory import build_model
from voldefense.models.losses import PatchAggregateLoss
from voldefense.testing import accuracy, fit, tiny_cnn
from voldefense.volumizer import Volumizer


@pytest.mark.parametrize("aggregation", ["mean_logits", "mean_probs", "majority_vote"])
@pytest.mark.parametrize("depth_kernel", [1, 3])
def test_gradients_reach_every_input_pixel_through_the_volumizer(aggregation, depth_kernel):
    torch.manual_seed(0)
    backbone = build_model("resnet50", dims=3, num_classes=4, width=0.125, depth_kernel=depth_kernel)
    g = DefendedClassifier(Volumizer(16), backbone, aggregation=aggregation).eval()
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits = g(images)
    assert logits.shape == (2, 4)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert (images.grad.abs().sum(dim=(0, 1)) > 0).float().mean() > 0.99  # (almost) every pixel gets gradient


def test_patch_logits_shape_and_forward_is_their_aggregate():
    backbone = build_model("efficientnet_b0", dims=3, num_classes=3, width=0.125)
    g = DefendedClassifier(Volumizer(8), backbone).eval()
    images = torch.rand(2, 3, 32, 32)
    patches = g.patch_logits(images)
    assert patches.shape == (2, 16, 3)
    assert torch.allclose(g(images), patches.mean(1), atol=1e-6)
    assert g.aggregation == "mean_logits"


def test_bad_aggregation_and_bad_input():
    with pytest.raises(ConfigError, match="aggregation"):
        DefendedClassifier(Volumizer(16), convert_to_3d(tiny_cnn(2)), aggregation="vote")
    g = DefendedClassifier(Volumizer(16), convert_to_3d(tiny_cnn(2)))
    with pytest.raises(ValueError, match="images"):
        g(torch.rand(3, 32, 32))


def test_depth_kernel_1_confines_an_attack_to_the_patches_it_touches():
    """With depth_kernel=1 (eval mode) changing one patch changes only that patch's logits (and vote)."""
    torch.manual_seed(0)
    backbone = build_model("vgg16", dims=3, num_classes=3, width=0.125, depth_kernel=1)
    g = DefendedClassifier(Volumizer(16, ranking="identity"), backbone, aggregation="majority_vote").eval()
    images = torch.rand(1, 3, 32, 32)
    attacked = images.clone()
    attacked[:, :, :16, :16] = torch.rand(1, 3, 16, 16)  # patch 0 of the 2x2 grid only
    with torch.no_grad():
        change = (g.patch_logits(images) - g.patch_logits(attacked)).abs().sum(-1)[0]
    assert change[0] > 0 and torch.all(change[1:] == 0)


def _tinted_images(n: int, num_classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-patch toy task: class k tints the whole image towards colour channel k, over noise.

    (voldefense.testing.make_toy_images encodes the class in *where* a square is, which the ranking
    deliberately scrambles; a defended model must learn from what every patch shows.)
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = 0.6 * torch.rand(n, 3, 32, 32, generator=g)
    images[torch.arange(n), labels] += 0.3
    return images.clamp(0, 1), labels


def test_tiny_defended_model_learns_a_toy_task_with_pal():
    torch.manual_seed(0)
    images, labels = _tinted_images(192)
    test_images, test_labels = _tinted_images(96, seed=1)
    g = DefendedClassifier(Volumizer(16), convert_to_3d(tiny_cnn(3, width=4), depth_kernel=3))
    before = accuracy(g.eval(), test_images, test_labels)
    history = fit(
        g,
        images,
        labels,
        epochs=6,
        lr=1e-2,
        batch_size=32,
        loss_fn=PatchAggregateLoss(),
        forward=lambda model, x: model.patch_logits(x),
    )
    after = accuracy(g.eval(), test_images, test_labels)
    assert history[-1] < 0.5 * history[0]
    assert after > max(before, 0.9)
