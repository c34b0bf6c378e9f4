"""pixel_search / pixel_search_grad: find few-pixel attacks in few queries, count every query, change at most N
pixels, stop early, deterministic, gradient-free when black-box."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.attacks.pixel_exhaustive import PixelExhaustiveAttack
from voldefense.attacks.pixel_search import PixelSearch, PixelSearchGradient, moved_share
from voldefense.attacks.regions import QueryCounter
from voldefense.errors import ConfigError, DataError
from voldefense.registry import Registry

SIDE = 8
TARGET, SECOND = (5, 2), (1, 6)
ATTACKS = [PixelSearch, PixelSearchGradient]


class OnePixelVulnerable(nn.Module):
    """Class 0 unless pixel TARGET is nearly white (channel sum > 2.7); a red (0, 0) guards the image (one pixel
    cannot both whiten TARGET and darken (0, 0)). Asserts that no black-box attack ever asks for gradients."""

    def __init__(self, black_box: bool = False) -> None:
        super().__init__()
        self.black_box = black_box
        self.dropout = nn.Dropout(0.5)  # only there to check that train/eval modes are restored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not (self.black_box and torch.is_grad_enabled()), "a black-box attack asked for gradients"
        score = x[:, :, TARGET[0], TARGET[1]].sum(dim=1)
        return torch.stack([4.0 * x[:, 0, 0, 0], 4.0 * (score - 2.7)], dim=1)


class TwoPixelVulnerable(nn.Module):
    """Flipped only when both TARGET and SECOND are near white: no single pixel is enough, two are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, :, TARGET[0], TARGET[1]].sum(dim=1)
        second = x[:, :, SECOND[0], SECOND[1]].sum(dim=1)
        return torch.stack([torch.zeros_like(first), 4.0 * (first - 2.7) + 4.0 * (second - 2.7)], dim=1)


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


def _changed(adv: torch.Tensor, clean: torch.Tensor) -> list[int]:
    return (adv != clean).any(dim=1).flatten(1).sum(dim=1).tolist()


@pytest.mark.parametrize("attack_type", ATTACKS)
def test_finds_the_one_vulnerable_pixel_and_stops_early(attack_type):
    model = OnePixelVulnerable(black_box=not attack_type.white_box).eval()
    x, y = _images(4, guarded=(1,))
    result = attack_type(max_queries=400, batch_size=16).run(model, x, y, 1)
    model.black_box = False
    assert result.extra["success"] == [True, False, True, True]
    assert (model(result.adversarial).argmax(1) == torch.tensor([1, 0, 1, 1])).all()
    assert _changed(result.adversarial[[0, 2, 3]], x[[0, 2, 3]]) == [1, 1, 1]
    assert (result.adversarial[[0, 2, 3], :, TARGET[0], TARGET[1]] == 1.0).all()  # white: a colour-cube corner
    # Early stop: the flipped images left long before the budget, the guarded one spent all of it.
    assert (result.queries[[0, 2, 3]] < 100).all()
    assert result.queries[1].item() == 400


@pytest.mark.parametrize("attack_type", ATTACKS)
def test_two_pixels_needed_and_used(attack_type):
    model = TwoPixelVulnerable()
    x, y = _images(3)
    one = attack_type(max_queries=600).run(model, x, y, 1, seed=1)
    assert one.extra["success"] == [False] * 3
    assert _changed(one.adversarial, x) == [1] * 3
    # Same colour set as pixel_exhaustive: no one-pixel corner change flips these images.
    assert PixelExhaustiveAttack().run(model, x, y, 1).extra["success"] == [False] * 3
    two = attack_type(max_queries=600).run(model, x, y, 2, seed=1)
    assert two.extra["success"] == [True] * 3
    assert _changed(two.adversarial, x) == [2] * 3
    assert (model(two.adversarial).argmax(1) == 1).all()


@pytest.mark.parametrize("attack_type", ATTACKS)
@pytest.mark.parametrize("n", [1, 3, 7])
def test_changes_at_most_n_pixels_to_corner_colours(attack_type, n):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 3))
    torch.manual_seed(0)
    nn.init.normal_(model[1].weight, std=0.02)
    x = torch.rand(5, 3, SIDE, SIDE)
    y = model(x).argmax(1)
    result = attack_type(max_queries=300, pool=8).run(model, x, y, n, seed=2)
    changed = torch.tensor(_changed(result.adversarial, x))
    assert ((changed >= 1) & (changed <= n)).all()
    moved = (result.adversarial != x).any(dim=1, keepdim=True).expand_as(x)
    assert set(result.adversarial[moved].unique().tolist()) <= {0.0, 1.0}
    flipped = model(result.adversarial).argmax(1) != y
    assert flipped.tolist() == result.extra["success"]


@pytest.mark.parametrize("attack_type", ATTACKS)
@pytest.mark.parametrize("n", [1, 4])
def test_every_forward_pass_is_a_counted_query(attack_type, n):
    counter = QueryCounter(OnePixelVulnerable())
    x, y = _images(5, guarded=(0, 3))
    y[4] = 1  # misclassified when clean: one query, left unchanged
    result = attack_type(max_queries=250, batch_size=7).run(counter, x, y, n)
    assert counter.count == int(result.queries.sum())
    assert result.queries[4].item() == 1 and torch.equal(result.adversarial[4], x[4])
    assert result.extra["misclassified_clean"] == [False, False, False, False, True]
    assert (result.queries <= 250).all()
    blind = attack_type(max_queries=250).run(Blind(), x, y, n)
    assert blind.queries.tolist() == [250, 250, 250, 250, 1]  # the budget is spent exactly, never exceeded


@pytest.mark.parametrize("attack_type", ATTACKS)
def test_deterministic_and_independent_of_batching(attack_type):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 3))
    torch.manual_seed(3)
    nn.init.normal_(model[1].weight, std=0.02)
    x = torch.rand(6, 3, SIDE, SIDE)
    y = model(x).argmax(1)
    y[4:] = (y[4:] + 1) % 3  # stands for a resisting image: the search runs its whole budget on it...
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
    first = attack_type(max_queries=200, batch_size=5).run(model, x, y, 3, seed=7)
    again = attack_type(max_queries=200, batch_size=999).run(model, x, y, 3, seed=7)
    assert torch.equal(first.adversarial, again.adversarial)
    same = attack_type(max_queries=200, batch_size=5).run(model, x, y, 3, seed=7)
    assert torch.equal(first.queries, same.queries) and torch.equal(first.adversarial, same.adversarial)
    alone = attack_type(max_queries=200).run(model, x[2:3], y[2:3], 3, seed=7)
    assert torch.equal(alone.adversarial[0], first.adversarial[2])


@pytest.mark.parametrize("attack_type", ATTACKS)
def test_the_seed_drives_the_random_search(attack_type):
    # Non-linear, so that no ranking (not even a gradient's) makes the first guess the best one.
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():
        model[3].bias.copy_(torch.tensor([50.0, 0.0]))  # out of reach of 3 pixels: the search never ends early
    x, y = torch.rand(3, 3, SIDE, SIDE), torch.zeros(3, dtype=torch.long)
    first = attack_type(max_queries=150, pool=16).run(model, x, y, 3, seed=0)
    other = attack_type(max_queries=150, pool=16).run(model, x, y, 3, seed=1)
    assert first.extra["success"] == other.extra["success"] == [False] * 3
    assert first.queries.tolist() == [150] * 3
    assert not torch.equal(first.adversarial, other.adversarial)


@pytest.mark.parametrize("attack_type", ATTACKS)
def test_restores_train_mode(attack_type):
    model = OnePixelVulnerable().train()
    model.dropout.eval()
    x, y = _images(2)
    attack_type(max_queries=50).run(model, x, y, 2)
    assert model.training and not model.dropout.training


def test_large_budget_matches_the_exhaustive_search():
    """With the budget of every candidate, the N = 1 search covers pixel_exhaustive's set in another order."""
    model = OnePixelVulnerable()
    x, y = _images(6, guarded=(2, 5))
    exact = PixelExhaustiveAttack().run(model, x, y, 1).extra["success"]
    searched = PixelSearch(max_queries=1 + 4 + SIDE * SIDE * 8).run(model, x, y, 1).extra["success"]
    assert searched == exact == [True, True, False, True, True, False]


def test_schedule_moves_fewer_pixels_as_the_budget_is_spent():
    shares = [moved_share(step, 1000) for step in (0, 10, 100, 500, 999)]
    assert shares == sorted(shares, reverse=True) and shares[0] == pytest.approx(0.3)
    assert shares[-1] == pytest.approx(0.3 / 20)


def test_registered_and_validated():
    registry = Registry(load_entry_points=False)
    spec, grad = registry.get("attack", "pixel_search"), registry.get("attack", "pixel_search_grad")
    assert spec.size_unit == grad.size_unit == "pixels"
    assert not spec.white_box and grad.white_box
    for bad in ({"max_queries": 1}, {"sweep": 2.0}, {"probe_block": -1}, {"focus": 1.5}, {"pool": 0}, {"x": 1}):
        with pytest.raises(ConfigError):
            spec.build(**bad)
    with pytest.raises(ConfigError):
        grad.build(sweep=0.5)  # a probe option: the gradient variant has no probes
    attack = spec.build(max_queries=20)
    x, y = _images(2)
    for size in (0, 1.5, SIDE * SIDE + 1):
        with pytest.raises(ConfigError):
            attack.run(Blind(), x, y, size)
    with pytest.raises(DataError):
        attack.run(Blind(), x + 1, y, 1)


class ManyPixelVulnerable(nn.Module):
    """Flipped only when at least 6 pixels are near white (no sweep of single pixels can do it); black-box."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled(), "a black-box attack asked for gradients"
        white = 10.0 * torch.relu(x.sum(dim=1) - 2.7).flatten(1).sum(dim=1)  # 3 per white pixel
        return torch.stack([torch.zeros_like(white), white - 15.0], dim=1)


def test_a_small_budget_still_leaves_queries_for_the_n_pixel_search():
    """300 queries on 32x32 images once went entirely to the probes and the pixel sweep, so N > 1 scored like
    N = 1 (measured on the CPU reproduction: the same accuracy at 1 to 512 pixels)."""
    x = 0.5 * torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(3, dtype=torch.long)
    model = ManyPixelVulnerable()
    assert PixelSearch(max_queries=300).run(model, x, y, 1).extra["success"] == [False] * 3
    result = PixelSearch(max_queries=300).run(model, x, y, 16)
    assert result.extra["success"] == [True] * 3
    assert (result.queries <= 300).all() and max(_changed(result.adversarial, x)) <= 16
