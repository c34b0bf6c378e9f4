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


# -- probabilities, and ART attacks beyond the gradient ones (docs/attacks.md lists which need what) ----------


def test_probabilities_option_predicts_softmax_with_the_same_loss_gradient(trained):
    model, xt, yt = trained
    logits, probs = _clf(model), _clf(model, probabilities=True)
    x, y = xt[:6].numpy(), yt[:6].numpy()
    expected = torch.softmax(model(xt[:6]), dim=-1).detach().numpy()
    np.testing.assert_allclose(probs.predict(x), expected, rtol=1e-5, atol=1e-6)
    # The default loss is the cross-entropy of the probabilities: the same gradient as from the logits.
    np.testing.assert_allclose(probs.loss_gradient(x, y), logits.loss_gradient(x, y), rtol=1e-3, atol=1e-7)
    assert probs.probabilities and not logits.probabilities


def test_simba_refuses_logits_and_runs_on_probabilities(trained):
    from art.attacks.evasion import SimBA

    model, xt, yt = trained
    with pytest.raises(ValueError, match="requires an estimator predicting probabilities"):
        SimBA(_clf(model), max_iter=2, verbose=False).generate(xt[:1].numpy(), np.eye(4)[yt[:1].numpy()])
    np.random.seed(0)
    clf = _clf(model, probabilities=True)
    x, y = xt[:2].numpy(), yt[:2].numpy()
    adv = SimBA(clf, attack="px", max_iter=40, epsilon=0.2, verbose=False).generate(x, np.eye(4, dtype=np.float32)[y])
    assert adv.shape == x.shape and np.abs(adv - x).max() <= 0.2 + 1e-6 and (adv != x).any()
    # SimBA keeps a step only when it lowers the true class's probability: it fell on every image (on this tiny
    # model 40 steps do not flip a prediction; measured 0.371 -> 0.368 and 0.453 -> 0.449).
    before, after = clf.predict(x)[np.arange(2), y], clf.predict(adv)[np.arange(2), y]
    assert (after < before).all()


def test_square_and_boundary_attacks_change_predictions(trained):
    from art.attacks.evasion import BoundaryAttack, SquareAttack

    model, xt, yt = trained
    clf = _clf(model)
    x, y = xt[:6].numpy(), yt[:6].numpy()
    np.random.seed(0)
    square = SquareAttack(clf, norm=np.inf, eps=0.3, max_iter=50, nb_restarts=1, verbose=False)
    assert _flip_rate(clf, square, x, np.eye(4, dtype=np.float32)[y]) > 0  # measured 3 of 6
    boundary = BoundaryAttack(
        clf, targeted=False, max_iter=10, num_trial=10, sample_size=10, init_size=20, verbose=False
    )
    assert _flip_rate(clf, boundary, x, None) > 0  # measured 6 of 6


def test_auto_pgd_needs_logits(trained):
    from art.attacks.evasion import AutoProjectedGradientDescent

    model, xt, yt = trained
    with pytest.raises(ValueError, match="expecting logits"):
        AutoProjectedGradientDescent(_clf(model, probabilities=True), eps=0.3, max_iter=2, verbose=False)
    clf = _clf(model)
    apgd = AutoProjectedGradientDescent(clf, eps=0.3, eps_step=0.1, max_iter=10, nb_random_init=1, verbose=False)
    assert _flip_rate(clf, apgd, xt[:6].numpy(), np.eye(4, dtype=np.float32)[yt[:6].numpy()]) > 0
