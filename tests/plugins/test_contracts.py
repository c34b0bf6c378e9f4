"""Contract tests over every registered plugin of every kind, built-in and contrib (voldefense-extras registered in
a fresh registry, as its entry point would register it): each attack respects its budget, restores every
submodule's train/eval mode, is deterministic given a seed and returns an `AttackResult`; each backbone builds,
converts to 3D and runs forward and backward; each loss and each metric (and a metric's declared surrogate)
returns finite values of the right shape. Tiny widths and images keep the whole module fast."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch

from voldefense.attacks import AttackResult
from voldefense.attacks.regions import patch_sides
from voldefense.registry import Registry
from voldefense.testing import fit, make_toy_images, tiny_cnn

EXTRAS_SRC = Path(__file__).resolve().parents[2] / "plugins_contrib" / "voldefense-extras" / "src"
EXTRAS_DIST = "voldefense-extras"


def _registry() -> Registry:
    """Built-ins plus the contrib package's plugin module (no entry points: the test sees exactly these)."""
    if str(EXTRAS_SRC) not in sys.path:
        sys.path.insert(0, str(EXTRAS_SRC))
    import voldefense_extras.plugin

    registry = Registry(load_entry_points=False)
    registry.register(voldefense_extras.plugin, origin=EXTRAS_DIST, name=f"{EXTRAS_DIST}:extras")
    assert not registry.failures, registry.failures
    return registry


REGISTRY = _registry()


def _names(kind: str) -> list[str]:
    return REGISTRY.names(kind)


def test_every_kind_has_builtin_and_contrib_plugins():
    origins = {(e.kind, e.origin == EXTRAS_DIST) for e in REGISTRY.entries()}
    for kind in ("metric", "backbone", "loss", "attack"):
        assert {(kind, False), (kind, True)} <= origins, kind


# -- attacks ------------------------------------------------------------------------------------------------

SIDE = 8  # 8x8 images: pixel_exhaustive tries 512 candidates, everything else is quick too
PIXELS = 2
AREA = 0.0625  # a 2x2 square


@pytest.fixture(scope="module")
def victim():
    """A tiny CNN trained briefly on 8x8 toy images (so attacks have something to break and stop early on),
    four held-out images, and a reference copy of its weights."""
    torch.manual_seed(0)
    x, y = make_toy_images(256, image_size=SIDE, seed=0)
    model = tiny_cnn()
    fit(model, x, y, epochs=2)
    xt, yt = make_toy_images(4, image_size=SIDE, seed=1)
    return model, xt, yt


def _fast_options(spec) -> dict:
    """The attack's declared budget options cut to an eighth of their defaults (at least 1): the contract is
    about behaviour, not strength."""
    defaults = spec.option_defaults()
    options = {}
    for key in spec.budget_keys({}):
        if isinstance(defaults.get(key), int) and not isinstance(defaults[key], bool):
            options[key] = max(1, defaults[key] // 8)
    return options


def _build(spec):
    options = _fast_options(spec)
    try:
        return spec.build(**options)
    except ValueError:  # a budget below the attack's own minimum (e.g. queries for the first population)
        return spec.build()


def _modes(model) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("name", _names("attack"))
def test_attack_contract(victim, name):
    model, images, labels = victim
    spec = REGISTRY.get("attack", name)
    size = PIXELS if spec.size_unit == "pixels" else AREA
    if name == "pixel_exhaustive":
        size = 1  # exact over one pixel only
    attack = _build(spec)
    # A mixed mode (some submodules training, some not) must come back exactly as it was.
    model.train()
    model[0].eval()
    before = _modes(model)
    try:
        first = attack.run(model, images, labels, size, seed=3)
        assert _modes(model) == before
    finally:
        model.eval()
    second = _build(spec).run(model, images, labels, size, seed=3)

    assert isinstance(first, AttackResult)
    adversarial = first.adversarial if first.adversarial.dim() == 5 else first.adversarial.unsqueeze(0)
    assert adversarial.shape[1:] == images.shape
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert first.queries.shape == (len(images),) and (first.queries >= 0).all()
    # Deterministic given the seed (whatever the mode it ran in).
    assert torch.equal(first.adversarial, second.adversarial)
    assert torch.equal(first.queries, second.queries)
    # Within budget: at most `size` changed pixel locations, or changes inside one square of the patch area.
    changed = (adversarial != images.unsqueeze(0)).any(dim=2)  # (R, B, H, W)
    if spec.size_unit == "pixels":
        assert int(changed.flatten(2).sum(2).max()) <= size
    else:
        side_h, side_w = patch_sides(size, SIDE, SIDE)
        for copy in changed.flatten(0, 1):
            rows, cols = copy.nonzero(as_tuple=True)
            if rows.numel():
                assert int(rows.max() - rows.min()) < side_h and int(cols.max() - cols.min()) < side_w


# -- backbones ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _names("backbone"))
def test_backbone_contract(name):
    from voldefense.models.convert import convert_to_3d

    spec = REGISTRY.get("backbone", name)
    torch.manual_seed(0)
    f = spec.build(num_classes=3, width=0.125)
    g = (spec.converter or convert_to_3d)(spec.build(num_classes=3, width=0.125), depth_kernel=3)
    for model, x, shape in ((f, torch.rand(2, 3, 32, 32), (2, 3)), (g, torch.rand(2, 3, 4, 16, 16), (2, 4, 3))):
        model.train()
        out = model(x)
        assert out.shape == shape and torch.isfinite(out).all()
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(gr is not None and torch.isfinite(gr).all() for gr in grads)
        assert any(bool(gr.abs().sum() > 0) for gr in grads)


# -- losses -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _names("loss"))
def test_loss_contract(name):
    spec = REGISTRY.get("loss", name)
    torch.manual_seed(0)
    shape = (4, 5) if spec.target == "image" else (4, 3, 5)
    logits = torch.randn(*shape, requires_grad=True)
    labels = torch.tensor([0, 1, 4, 2])
    loss = spec.build()(logits, labels)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and bool(logits.grad.abs().sum() > 0)


# -- metrics ------------------------------------------------------------------------------------------------


def _graded_samples(m: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples from flat to noisy (so scores vary) and a reference: (m, 3, 6, 6), (3, 6, 6)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(m, 3, 6, 6, generator=g)
    level = torch.linspace(0, 1, m).view(m, 1, 1, 1)
    return (0.5 + level * (noise - 0.5)).clamp(0, 1), torch.rand(3, 6, 6, generator=g)


@pytest.mark.parametrize("name", _names("metric"))
def test_metric_contract(name):
    spec = REGISTRY.get("metric", name)
    x, ref = _graded_samples()
    metric = spec.build()
    scores = metric(x, ref if spec.distance else None)
    assert scores.shape == (8,) and scores.is_floating_point() and torch.isfinite(scores).all()
    if spec.surrogate is None:
        return
    # A declared surrogate takes exactly the metric's options, is differentiable and follows the metric.
    params = inspect.signature(spec.factory).parameters
    assert inspect.signature(spec.surrogate).parameters.keys() == params.keys()
    xg = x.clone().requires_grad_(True)
    soft = spec.build_surrogate()(xg, ref if spec.distance else None)
    assert soft.shape == (8,) and torch.isfinite(soft).all()
    (grad,) = torch.autograd.grad(soft.sum(), xg)
    assert torch.isfinite(grad).all() and bool(grad.abs().sum() > 0)
    assert torch.corrcoef(torch.stack([soft.detach(), scores.float()]))[0, 1] > 0.9
