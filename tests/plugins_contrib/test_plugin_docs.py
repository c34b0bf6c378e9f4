"""The plugin author's guide (docs/plugins.md): every minimal example is a working plugin that passes the
contract checks the guide describes."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch

from voldefense.registry import Registry
from voldefense.testing import fit, make_toy_images, tiny_cnn

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```python\n(.*?)```", re.S)


def _examples() -> dict[str, str]:
    return dict(EXAMPLE.findall(GUIDE.read_text()))


def _registry_for(kind: str) -> Registry:
    module = types.ModuleType(f"guide_example_{kind}")
    exec(compile(_examples()[kind], f"docs/plugins.md:{kind}", "exec"), module.__dict__)  # noqa: S102
    registry = Registry(load_builtins=False, load_entry_points=False)
    registry.register(module, origin="guide")
    assert not registry.failures, registry.failures
    return registry


def test_the_guide_has_one_example_per_kind():
    assert set(_examples()) == {"metric", "backbone", "loss", "attack", "defense"}


def test_metric_example():
    spec = _registry_for("metric").get("metric", "l1")
    metric = spec.build(scale=2.0)
    x = torch.rand(5, 3, 8, 8)
    for reference in (x[:1], x):
        scores = metric(x, reference)
        assert scores.shape == (5,) and torch.isfinite(scores).all()
    assert float(metric(x, x).abs().max()) == 0.0


def test_backbone_example():
    convert = pytest.importorskip("voldefense.models.convert")
    spec = _registry_for("backbone").get("backbone", "small_cnn")
    f = spec.build(num_classes=4, width=0.25).eval()
    assert f(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    g = convert.convert_to_3d(f).eval()
    volume = torch.rand(2, 3, 4, 8, 8)
    with torch.no_grad():
        expected = torch.stack([f(volume[:, :, i]) for i in range(4)], 1)
        assert torch.allclose(g(volume), expected, atol=1e-5)


def test_loss_example():
    spec = _registry_for("loss").get("loss", "patch_ce_penalty")
    assert spec.target == "patch"
    logits = torch.randn(3, 4, 5, requires_grad=True)
    value = spec.build(beta=0.2)(logits, torch.tensor([0, 1, 2]))
    assert value.dim() == 0
    value.backward()
    assert logits.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    x, y = make_toy_images(96, image_size=16, num_classes=4, seed=0)
    model = tiny_cnn(4, width=4)
    fit(model, x, y, epochs=6, seed=0)
    return model, x, y


def test_attack_example(toy):
    model, x, y = toy
    attack = _registry_for("attack").get("attack", "salt_and_pepper").build(tries=5)
    model.train()
    result = attack.run(model, x[:8], y[:8], 3, seed=0)
    assert model.training  # mode restored
    model.eval()
    assert (result.queries <= 5).all() and result.adversarial.shape == x[:8].shape
    assert ((result.adversarial != x[:8]).any(1).flatten(1).sum(1) <= 3).all()
    again = attack.run(model, x[:8], y[:8], 3, seed=0)
    assert torch.equal(again.adversarial, result.adversarial)


def test_defense_example(toy):
    from voldefense.defenses import DefendedModel, TrainBudget

    model, x, y = toy
    defense = _registry_for("defense").get("defense", "bit_depth").build(bits=2)
    defended = defense.fit(lambda c: tiny_cnn(4, in_channels=c, width=4), x, y, TrainBudget(epochs=1))
    assert isinstance(defended, DefendedModel) and set(defended.view_names) == {"naive", "bpda"}
    images = x[:4].clone().requires_grad_(True)
    naive, bpda = defended.model_for_attack("naive"), defended.model_for_attack("bpda")
    assert torch.equal(naive(images), bpda(images))  # views differ only in their gradients
    bpda(images).sum().backward()
    assert images.grad.abs().sum() > 0  # the straight-through view passes gradients; rounding alone would not
    reused = defense.fit(None, x, y, TrainBudget(epochs=1), base_model=model)
    assert reused.model[1] is model
