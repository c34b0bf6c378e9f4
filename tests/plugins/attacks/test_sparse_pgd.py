"""sparse_pgd: exact pixel budget, monotone in N, unbounded budget succeeds, mode restored, deterministic."""

from __future__ import annotations

import pytest
import torch

from voldefense.attacks.regions import changed_pixels
from voldefense.errors import ConfigError
from voldefense.evaluation import evaluate_attack, summarize


def test_spec(registry):
    spec = registry.get("attack", "sparse_pgd")
    assert spec.size_unit == "pixels" and spec.white_box
    with pytest.raises(ConfigError, match="bogus"):
        spec.build(bogus=1)
    with pytest.raises(ConfigError):
        spec.build(steps=0)
    with pytest.raises(ConfigError):
        spec.build(targeted=True)


@pytest.mark.parametrize("n", [1, 5, 40])
def test_budget_is_exact(registry, trained, n):
    model, xt, yt = trained
    result = registry.get("attack", "sparse_pgd").build(steps=10).run(model, xt, yt, n, seed=0)
    assert result.adversarial.shape == xt.shape
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert int(changed_pixels(result.adversarial, xt).max()) <= n
    assert (
        result.queries.shape == (24,) and int(result.queries.min()) >= 1 and int(result.queries.max()) <= 11
    )


def test_more_pixels_never_help_and_unbounded_succeeds(registry, trained):
    model, xt, yt = trained
    attack = registry.get("attack", "sparse_pgd").build(steps=20)
    accs = [
        summarize(evaluate_attack(model, attack, xt, yt, n, seed=0)).attacked_accuracy
        for n in (1, 16, 64, 1024)
    ]
    clean = summarize(evaluate_attack(model, attack, xt, yt, 1)).clean_accuracy
    assert clean > 0.9
    assert all(b <= a + 0.05 for a, b in zip(accs, accs[1:], strict=False)), accs
    assert accs[2] < clean - 0.5  # large N drives accuracy well below clean
    assert accs[-1] <= 0.05  # the whole image: near 100% success


def test_mode_restored_and_deterministic(registry, trained):
    model, xt, yt = trained
    model.train()
    attack = registry.get("attack", "sparse_pgd").build(steps=5, restarts=2)
    a = attack.run(model, xt[:6], yt[:6], 8, seed=3)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    b = attack.run(model, xt[:6], yt[:6], 8, seed=3)
    assert not model.training
    assert torch.equal(a.adversarial, b.adversarial)


def test_targeted_reaches_target(registry, trained):
    model, xt, yt = trained
    attack = registry.get("attack", "sparse_pgd").build(steps=20, targeted=True, target_class=2)
    adv = attack.run(model, xt, yt, 1024).adversarial
    assert float((model(adv).argmax(1) == 2).float().mean()) > 0.9
