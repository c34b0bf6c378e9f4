"""pixel_exhaustive: exact one-pixel robustness over the colour-cube corners, with faithful query counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voldefense.attacks.pixel_batched import PixelBatchedAttack
from voldefense.attacks.pixel_exhaustive import PixelExhaustiveAttack
from voldefense.errors import ConfigError
from voldefense.registry import Registry

SIDE = 8
TARGET = (5, 2)
CANDIDATES = SIDE * SIDE * 8


class WhitePixelFlips(nn.Module):
    """Class 0 unless pixel TARGET is white-ish (channel sum > 2.7); a red (0, 0) guards the image (see
    test_pixel_batched.OnePixelVulnerable). Of the 8 corners at 64 locations, only white at TARGET flips."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x[:, :, TARGET[0], TARGET[1]].sum(dim=1)
        return torch.stack([4.0 * x[:, 0, 0, 0], 4.0 * (score - 2.7)], dim=1)


class Blind(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([1.0, 0.0]).expand(x.shape[0], 2)


def _images(n: int, guarded: tuple[int, ...] = (), side: int = SIDE) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = 0.5 * torch.rand(n, 3, side, side, generator=g)
    x[:, 0, 0, 0] = 0.0
    for i in guarded:
        x[i, 0, 0, 0] = 1.0
    return x, torch.zeros(n, dtype=torch.long)


def test_finds_the_vulnerable_pixel_and_counts_every_candidate():
    model = WhitePixelFlips()
    x, y = _images(3, guarded=(1,))
    result = PixelExhaustiveAttack(early_exit=False, batch_size=100).run(model, x, y, 1)
    assert result.extra["success"] == [True, False, True]
    # Exactly one of the 512 candidates (white at TARGET) flips an unguarded image; none flips a guarded one.
    assert result.extra["flipping_candidates"] == [1, 0, 1]
    assert result.queries.tolist() == [1 + CANDIDATES] * 3
    assert result.adversarial[0, :, TARGET[0], TARGET[1]].tolist() == [1.0, 1.0, 1.0]
    assert int((result.adversarial[0] != x[0]).any(0).sum()) == 1
    assert torch.equal(result.adversarial[1], x[1])


def test_early_exit_stops_at_the_chunk_holding_the_flip():
    model = WhitePixelFlips()
    x, y = _images(2, guarded=(1,))
    result = PixelExhaustiveAttack(batch_size=64).run(model, x, y, 1)
    assert result.extra["success"] == [True, False]
    white_at_target = (TARGET[0] * SIDE + TARGET[1]) * 8 + 7  # location-major, white is the last corner
    flipped = result.queries[0].item() - 1
    assert white_at_target < flipped < CANDIDATES  # it saw the flip, and stopped before the end
    assert result.queries[1].item() == 1 + CANDIDATES
    assert (model(result.adversarial).argmax(1) == torch.tensor([1, 0])).all()


def test_blind_model_has_no_successes():
    x, y = _images(2)
    result = PixelExhaustiveAttack().run(Blind(), x, y, 1)
    assert result.extra["success"] == [False, False]
    assert torch.equal(result.adversarial, x)
    assert result.queries.tolist() == [1 + CANDIDATES] * 2


def test_bounds_the_sampled_search():
    """No search over the same colour set can beat the exhaustive one: every image pixel_batched flips with
    corner colours, pixel_exhaustive flips too."""
    model = WhitePixelFlips()
    x, y = _images(4, guarded=(0, 2))
    exact = PixelExhaustiveAttack().run(model, x, y, 1)
    sampled = PixelBatchedAttack(population=32, max_queries=2000, colour="corners").run(model, x, y, 1)
    assert exact.extra["success"] == [False, True, False, True]
    assert all(e or not s for e, s in zip(exact.extra["success"], sampled.extra["success"], strict=True))


def test_size_and_image_limits():
    attack = Registry(load_entry_points=False).get("attack", "pixel_exhaustive").build()
    x, y = _images(1)
    with pytest.raises(ConfigError, match="size must be 1"):
        attack.run(Blind(), x, y, 2)
    big_x, big_y = _images(1, side=40)
    with pytest.raises(ConfigError, match="max_pixels"):
        attack.run(Blind(), big_x, big_y, 1)
    raised = PixelExhaustiveAttack(max_pixels=40 * 40, batch_size=4096)
    assert raised.run(Blind(), big_x, big_y, 1).queries.tolist() == [1 + 40 * 40 * 8]
    with pytest.raises(ConfigError):
        PixelExhaustiveAttack(early_exit="yes")


def test_grayscale_has_two_corners_and_mode_is_restored():
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2)).train()
    x = torch.rand(2, 1, SIDE, SIDE)
    y = model(x).argmax(1)
    result = PixelExhaustiveAttack(early_exit=False).run(model, x, y, 1)
    assert result.extra["candidates_per_image"] == SIDE * SIDE * 2
    assert model.training
