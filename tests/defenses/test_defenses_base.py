"""The defense protocol: budget validation, the straight-through helper, views, the shared training loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.defenses.base import DefendedModel, TrainBudget, straight_through, train_classifier
from voldefense.errors import ConfigError
from voldefense.testing import accuracy, make_toy_images, tiny_cnn


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_budget_rejects_bad_values(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainBudget(**kwargs)


def test_straight_through_forward_exact_and_gradient_of_surrogate() -> None:
    surrogate = torch.tensor([0.3, 1.7, 2.2], requires_grad=True)
    value = torch.tensor([1.0, 2.0, 2.0])
    out = straight_through(value, surrogate * 3)
    assert torch.equal(out, value)  # bit-identical, so argmax ties stay ties
    out.sum().backward()
    assert torch.equal(surrogate.grad, torch.full((3,), 3.0))
    with pytest.raises(ValueError, match="equal shapes"):
        straight_through(value, surrogate[:2])


def test_defended_model_views_and_certify() -> None:
    model = nn.Linear(3, 2)
    defended = DefendedModel(name="x", model=model, views={"a": model})
    assert defended.model_for_attack("a") is model
    assert defended.view_names == ("a",)
    with pytest.raises(ConfigError, match="no attack view 'b'.*available: a"):
        defended.model_for_attack("b")
    assert not defended.certifiable
    assert defended.certify(torch.zeros(1, 3), torch.zeros(1), [2]) is None
    with pytest.raises(ValueError, match="at least one attack view"):
        DefendedModel(name="x", model=model, views={})


def test_certify_passes_integer_sides() -> None:
    seen = {}

    def certifier(x, y, sides):
        seen["sides"] = sides
        return {s: torch.ones(len(x), dtype=torch.bool) for s in sides}

    defended = DefendedModel(name="x", model=nn.Identity(), views={"v": nn.Identity()}, certifier=certifier)
    out = defended.certify(torch.zeros(2, 3), torch.zeros(2), [4.0, 6])
    assert seen["sides"] == [4, 6] and set(out) == {4, 6}


def test_train_classifier_learns_deterministically_and_applies_transform() -> None:
    x, y = make_toy_images(128, image_size=16, seed=0)
    budget = TrainBudget(epochs=12, batch_size=32, lr=1e-2, seed=3)
    torch.manual_seed(0)
    a = tiny_cnn(4)
    torch.manual_seed(0)
    b = tiny_cnn(4)
    hist_a = train_classifier(a, x, y, budget)
    hist_b = train_classifier(b, x, y, budget)
    assert hist_a == hist_b and hist_a[-1] < hist_a[0]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not a.training and accuracy(a, x, y) > 0.8

    calls = []

    def blank(model, images, labels, generator):
        calls.append(images.shape[0])
        return torch.zeros_like(images)

    c = tiny_cnn(4)
    train_classifier(c, x, y, TrainBudget(epochs=1, batch_size=50), transform=blank)
    assert calls == [50, 50, 28]
    # trained on blank images only: it cannot beat chance by much on real ones
    assert accuracy(c, x, y) < 0.5


def test_fit_uses_an_injected_trainer_with_the_defense_transform() -> None:
    """A runner with its own loop passes `trainer`; the defense hands it the model and its batch transform."""
    from voldefense.defenses.ablation import DerandomizedSmoothingDefense

    x, y = make_toy_images(32, image_size=16, seed=0)
    seen = {}

    def trainer(model, images, labels, transform):
        seen["model"], seen["n"] = model, len(images)
        batch = transform(model, images[:4], labels[:4], torch.Generator().manual_seed(0))
        seen["batch"] = batch

    defended = DerandomizedSmoothingDefense("column", 4).fit(
        lambda c: tiny_cnn(4, in_channels=c), x, y, TrainBudget(epochs=99), trainer=trainer
    )
    assert seen["model"] is defended.model.base and seen["n"] == 32
    batch = seen["batch"]
    assert batch.shape == (4, 6, 16, 16)  # cat([x, 1 - x]) ablated to a 4-column band
    assert ((batch != 0).any(dim=(1, 2)).sum(dim=1) == 4).all()
    assert not defended.model.training
