"""pixel_batched: finds one-pixel attacks, spends its budget exactly, changes at most N pixels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.attacks._pixel_search import paint_pixels, uniform
from voldefense.attacks.pixel_batched import PixelBatchedAttack
from voldefense.errors import ConfigError, DataError
from voldefense.registry import Registry

SIDE = 8
TARGET = (5, 2)


class OnePixelVulnerable(nn.Module):
    """Class 0 unless pixel TARGET is nearly white (channel sum > 2.7), which flips it to class 1.

    Images whose pixel (0, 0) has red >= 0.3 are robust to one pixel: that pixel raises class 0 by as much as
    a white TARGET can raise class 1, and one changed pixel cannot both whiten TARGET and darken (0, 0).
    """

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)  # only there to check that train/eval modes are restored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x[:, :, TARGET[0], TARGET[1]].sum(dim=1)
        guard = 4.0 * x[:, 0, 0, 0]
        return torch.stack([guard, 4.0 * (score - 2.7)], dim=1)


class Blind(nn.Module):
    """Ignores the image: no attack can ever succeed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([1.0, 0.0]).expand(x.shape[0], 2)


def _images(n: int, guarded: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = 0.5 * torch.rand(n, 3, SIDE, SIDE, generator=g)
    x[:, 0, 0, 0] = 0.0
    for i in guarded:
        x[i, 0, 0, 0] = 1.0
    return x, torch.zeros(n, dtype=torch.long)


def _changed_locations(adv: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    return (adv != clean).any(dim=1).flatten(1).sum(dim=1)


def test_finds_the_one_vulnerable_pixel():
    model = OnePixelVulnerable().eval()
    x, y = _images(4)
    attack = PixelBatchedAttack(population=40, max_queries=3000)
    result = attack.run(model, x, y, 1, seed=0)
    assert result.extra["success"] == [True] * 4
    assert (model(result.adversarial).argmax(1) == 1).all()
    assert _changed_locations(result.adversarial, x).tolist() == [1] * 4
    assert (result.adversarial[:, :, TARGET[0], TARGET[1]].sum(1) > 2.7).all()
    # Early stopping: every image stopped before its budget, and the counts are whole generations after the
    # clean check and the initial population.
    assert ((result.queries < 3000) & ((result.queries - 1) % 40 == 0)).all()


def test_robust_images_fail_and_spend_the_exact_budget():
    model = OnePixelVulnerable().eval()
    x, y = _images(4, guarded=(1, 3))
    result = PixelBatchedAttack(population=40, max_queries=1234).run(model, x, y, 1, seed=0)
    assert result.extra["success"] == [True, False, True, False]
    assert result.queries[1].item() == result.queries[3].item() == 1234  # 1 + 40 + 29 * 40 + 33: partial last
    assert (model(result.adversarial[[1, 3]]).argmax(1) == 0).all()


@pytest.mark.parametrize("n", [1, 3, 7])
@pytest.mark.parametrize("colour", ["continuous", "corners"])
def test_changes_at_most_n_pixels(n: int, colour: str):
    x, y = _images(3)
    result = PixelBatchedAttack(population=30, max_queries=301, colour=colour).run(Blind(), x, y, n, seed=2)
    changed = _changed_locations(result.adversarial, x)
    assert (changed <= n).all() and (changed >= 1).all()
    assert result.extra["success"] == [False] * 3
    assert result.queries.tolist() == [301] * 3
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    if colour == "corners":
        moved = (result.adversarial != x).any(dim=1, keepdim=True).expand_as(x)
        assert set(result.adversarial[moved].unique().tolist()) <= {0.0, 1.0}


def test_duplicate_locations_keep_the_last_colour():
    base = torch.zeros(1, 3, 4, 4)
    rows, cols = torch.tensor([[1, 1, 2]]), torch.tensor([[3, 3, 0]])
    colours = torch.tensor([[[0.1, 0.1, 0.1], [0.9, 0.8, 0.7], [0.5, 0.5, 0.5]]])
    out = paint_pixels(base, rows, cols, colours)
    assert out[0, :, 1, 3].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert out[0, :, 2, 0].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert int((out != 0).any(1).sum()) == 2


def test_deterministic_and_independent_of_batching():
    model = OnePixelVulnerable().eval()
    x, y = _images(5, guarded=(2,))
    first = PixelBatchedAttack(population=24, max_queries=600, batch_size=7).run(model, x, y, 2, seed=3)
    again = PixelBatchedAttack(population=24, max_queries=600, batch_size=1000).run(model, x, y, 2, seed=3)
    assert torch.equal(first.adversarial, again.adversarial)
    assert torch.equal(first.queries, again.queries)
    # An image's search does not depend on the other images in the batch (counter-based randomness keyed by
    # its index): image 0 attacked alone matches image 0 attacked with the others.
    alone = PixelBatchedAttack(population=24, max_queries=600).run(model, x[:1], y[:1], 2, seed=3)
    assert torch.equal(alone.adversarial[0], first.adversarial[0])
    other_seed = PixelBatchedAttack(population=24, max_queries=600).run(model, x, y, 2, seed=4)
    assert not torch.equal(other_seed.adversarial, first.adversarial)


def test_misclassified_images_cost_one_query_and_stay_clean():
    model = OnePixelVulnerable().eval()
    x, y = _images(3)
    y[1] = 1  # the model says 0: already wrong
    result = PixelBatchedAttack(population=20, max_queries=200).run(model, x, y, 1, seed=0)
    assert result.queries[1].item() == 1
    assert torch.equal(result.adversarial[1], x[1])
    assert result.extra["misclassified_clean"] == [False, True, False]
    assert result.extra["success"][1] is False


def test_restores_train_mode():
    model = OnePixelVulnerable().train()
    model.dropout.eval()
    x, y = _images(2)
    PixelBatchedAttack(population=10, max_queries=50).run(model, x, y, 1)
    assert model.training and not model.dropout.training


def test_uniform_is_keyed_by_image():
    ids = torch.tensor([0, 1, 2])
    u = uniform(5, ids, 3, 0, (1000,))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.03
    assert torch.equal(uniform(5, torch.tensor([2]), 3, 0, (1000,))[0], u[2])
    assert not torch.equal(u[0], u[1])


def test_registered_and_validated():
    spec = Registry(load_entry_points=False).get("attack", "pixel_batched")
    assert spec.size_unit == "pixels" and not spec.white_box
    for bad in ({"population": 3}, {"max_queries": 100}, {"colour": "rgb"}, {"corner_init": 2}, {"typo": 1}):
        with pytest.raises(ConfigError):
            spec.build(**bad)
    attack = spec.build(population=10, max_queries=50)
    x, y = _images(2)
    for size in (0, 2.5, SIDE * SIDE + 1):
        with pytest.raises(ConfigError):
            attack.run(Blind(), x, y, size)
    with pytest.raises(DataError):
        attack.run(Blind(), x + 1, y, 1)
