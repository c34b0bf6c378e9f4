"""VolumizedClassifier: ART's classifier contract over an undefended 2D model and a volumized pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from voldefense.errors import ConfigError, UsageError
from voldefense.estimator import VolumizedClassifier
from voldefense.specs import MetricSpec
from voldefense.testing import accuracy, fit, tiny_cnn


def _variance_metric():
    # A self-contained ranking metric, so this test does not depend on which metric plugins exist.
    return lambda x, reference=None: x.flatten(1).var(1)


class PatchMean3D(nn.Module):
    """Volumizer + tiny 3D conv net + mean of per-patch logits: the defended pipeline's shape."""

    def __init__(self, num_classes: int = 4, patch: int = 8):
        super().__init__()
        from voldefense.volumizer import Volumizer

        spec = MetricSpec(
            name="variance", factory=_variance_metric, description="pixel variance", distance=False
        )
        self.volumizer = Volumizer(patch_size=patch, metric=spec)
        self.net = nn.Sequential(
            nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d((None, 1, 1)),
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        volume = self.volumizer(x)  # (B, C, N, ph, pw)
        feats = self.net(volume).flatten(3).squeeze(-1).transpose(1, 2)  # (B, N, 8)
        return self.head(feats).mean(1)


def _clf(model, **kw):
    return VolumizedClassifier(model, 4, (3, 32, 32), **kw)


def test_attributes_follow_art():
    clf = _clf(tiny_cnn(), clip_values=(0, 1))
    assert clf.nb_classes == 4
    assert clf.input_shape == (3, 32, 32)
    assert clf.clip_values.dtype == np.float32
    np.testing.assert_array_equal(clf.clip_values, [0.0, 1.0])
    assert clf.channels_first


@pytest.mark.parametrize(
    "kwargs",
    [dict(nb_classes=1), dict(input_shape=(32, 32)), dict(clip_values=(1, 0)), dict(device="tpu")],
)
def test_bad_arguments_raise_config_error(kwargs):
    args = dict(nb_classes=4, input_shape=(3, 32, 32)) | kwargs
    # A wrong input shape is misuse of the Python API; the other arguments are configuration values.
    with pytest.raises(UsageError if "input_shape" in kwargs else ConfigError):
        VolumizedClassifier(tiny_cnn(), args.pop("nb_classes"), args.pop("input_shape"), **args)


def test_predict_matches_model_and_accepts_float64(trained):
    model, xt, _ = trained
    clf = _clf(model)
    expected = model(xt).detach().numpy()
    np.testing.assert_allclose(clf.predict(xt.numpy().astype(np.float64)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("one_hot", [False, True])
def test_loss_gradient_equals_autograd_in_chunks(trained, one_hot):
    model, xt, yt = trained
    x = xt[:7].clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), yt[:7])
    (expected,) = torch.autograd.grad(loss, x)
    clf = _clf(model, gradient_batch_size=3)  # 7 images: chunks of 3, 3, 1
    labels = np.eye(4, dtype=np.float32)[yt[:7].numpy()] if one_hot else yt[:7].numpy()
    got = clf.loss_gradient(xt[:7].numpy(), labels)
    # ART differentiates the mean loss of each chunk; rescale to the mean over all 7 images.
    sizes = np.array([3, 3, 3, 3, 3, 3, 1], dtype=np.float32).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(got * sizes / 7, expected.numpy(), rtol=1e-4, atol=1e-7)


def test_class_gradient_equals_autograd(trained):
    model, xt, _ = trained
    x = xt[:5].clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(x)[:, 2].sum(), x)
    clf = _clf(model, gradient_batch_size=2)
    got = clf.class_gradient(xt[:5].numpy(), label=2)
    assert got.shape == (5, 1, 3, 32, 32)
    np.testing.assert_allclose(got[:, 0], expected.numpy(), rtol=1e-4, atol=1e-7)
    per_sample = clf.class_gradient(xt[:5].numpy(), label=np.array([2, 2, 2, 2, 2]))
    np.testing.assert_allclose(per_sample, got, rtol=1e-5, atol=1e-8)
    assert clf.class_gradient(xt[:3].numpy()).shape == (3, 4, 3, 32, 32)


def test_bad_labels_raise(trained):
    clf = _clf(trained[0])
    with pytest.raises(ConfigError):
        clf.loss_gradient(trained[1][:2].numpy(), np.array([0, 7]))


def _flip_rate(clf, attack, x, y):
    clean = clf.predict(x).argmax(1)
    adv = attack.generate(x=x, y=y)
    assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
    return float((clf.predict(adv).argmax(1) != clean).mean())


def test_unwrapped_art_attacks_change_predictions(trained):
    from art.attacks.evasion import FastGradientMethod, HopSkipJump, ProjectedGradientDescent

    model, xt, yt = trained
    clf = _clf(model)
    x, y = xt[:12].numpy(), yt[:12].numpy()
    assert _flip_rate(clf, FastGradientMethod(clf, eps=0.3), x, y) >= 0.5
    pgd = ProjectedGradientDescent(clf, eps=0.3, eps_step=0.05, max_iter=10, verbose=False)
    assert _flip_rate(clf, pgd, x, y) >= 0.8
    hsj = HopSkipJump(clf, max_iter=2, max_eval=30, init_eval=10, init_size=20, verbose=False)
    assert _flip_rate(clf, hsj, x[:3], None) >= 0.6


def _colour_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k = a square whose colour is channel k, anywhere: learnable without knowing patch positions,
    which a volumized model (patches re-ordered by content) does not see."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.rand(n, 3, 32, 32, generator=g)
    for i in range(n):
        r, c = torch.randint(0, 24, (2,), generator=g).tolist()
        x[i, int(y[i]), r : r + 8, c : c + 8] = 0.9
    return x, y


def test_volumized_pipeline_gradients_reach_pixels_and_fgsm_flips():
    from art.attacks.evasion import FastGradientMethod

    torch.manual_seed(0)
    x, y = _colour_task(160, seed=2)
    pipeline = PatchMean3D(num_classes=3)
    fit(pipeline, x, y, epochs=10, lr=1e-2)
    assert accuracy(pipeline, x, y) > 0.6  # chance is 1/3
    clf = VolumizedClassifier.from_images(pipeline, x[:4])
    assert clf.nb_classes == 3 and clf.input_shape == (3, 32, 32)
    grad = clf.loss_gradient(x[:4].numpy(), y[:4].numpy())
    # The ranking is not differentiated, but the gather is: every pixel gets a gradient.
    assert (np.abs(grad).sum(1) > 0).mean() > 0.99
    flipped = _flip_rate(clf, FastGradientMethod(clf, eps=0.5), x[:16].numpy(), y[:16].numpy())
    assert flipped >= 0.5
