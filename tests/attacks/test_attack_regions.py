"""Shared attack geometry: patch sides, pixel budgets, pasting, pixel counting, input checks."""

from __future__ import annotations

import pytest
import torch

from voldefense.attacks.regions import (
    QueryCounter,
    box_mask,
    changed_pixels,
    check_inputs,
    paste,
    patch_sides,
    pixel_budget,
    random_locations,
)
from voldefense.errors import ConfigError, TensorError


def test_patch_sides_cover_the_area():
    assert patch_sides(0.25, 32, 32) == (16, 16)
    assert patch_sides(1.0, 32, 48) == (32, 48)
    assert patch_sides(0.0001, 32, 32) == (1, 1)
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ConfigError):
            patch_sides(bad, 32, 32)


def test_pixel_budget_is_a_whole_count():
    assert pixel_budget(3.0, 8, 8) == 3
    for bad in (0, 2.5, 65):
        with pytest.raises(ConfigError):
            pixel_budget(bad, 8, 8)


def test_paste_is_differentiable_and_local():
    images = torch.zeros(2, 3, 8, 8)
    patch = torch.ones(3, 2, 3, requires_grad=True)
    loc = torch.tensor([[0, 0], [6, 5]])
    out = paste(images, patch, loc)
    assert changed_pixels(out, images).tolist() == [6, 6]
    assert torch.equal(box_mask(loc, 2, 3, 8, 8)[:, 0].bool(), (out != 0).any(1))
    out.sum().backward()
    assert torch.equal(patch.grad, torch.full_like(patch, 2.0))


def test_random_locations_stay_inside():
    g = torch.Generator().manual_seed(0)
    loc = random_locations(500, 3, 5, 8, 8, g)
    assert loc[:, 0].min() >= 0 and loc[:, 0].max() == 5 and loc[:, 1].max() == 3


def test_changed_pixels_counts_locations_not_channels():
    clean = torch.zeros(1, 3, 4, 4)
    adv = clean.clone()
    adv[0, :, 1, 1] = 1
    adv[0, 0, 2, 2] = 0.5
    assert changed_pixels(adv, clean).tolist() == [2]
    assert changed_pixels(adv.unsqueeze(0).repeat(3, 1, 1, 1, 1), clean).shape == (3, 1)


def test_check_inputs_rejects_bad_images():
    good = torch.rand(2, 3, 4, 4)
    check_inputs(good, torch.tensor([0, 1]))
    with pytest.raises(TensorError):
        check_inputs(good * 255, torch.tensor([0, 1]))
    with pytest.raises(TensorError):
        check_inputs(good[0], torch.tensor([0, 1]))
    with pytest.raises(TensorError):
        check_inputs(good, torch.tensor([0.0, 1.0]))


def test_query_counter_counts_images():
    counter = QueryCounter(torch.nn.Flatten())
    counter(torch.zeros(5, 2))
    counter(torch.zeros(3, 2))
    assert counter.count == 8
