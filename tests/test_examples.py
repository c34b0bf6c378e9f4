"""The shipped example of your own model (examples/my_model.py, docs/your_model.md) converts cleanly and inflates
exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from voldefense.models.convert import convert_to_3d
from voldefense.models.inflate import inflate_into
from voldefense.models.user import import_factory
from voldefense.testing import perturb_weights


def test_example_model_converts_without_warnings_and_g_starts_as_f(caplog, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])  # imported from the repository root, as the docs run it
    small_resnet = import_factory("examples.my_model:small_resnet")
    f = perturb_weights(small_resnet(num_classes=10, width=4))
    with caplog.at_level(logging.WARNING):
        g = convert_to_3d(small_resnet(num_classes=10, width=4), depth_kernel=3)
    assert not caplog.records  # Normalize declares itself volume-ready; the empty shortcuts are containers
    inflate_into(g, f)
    volume = torch.rand(2, 3, 4, 16, 16)
    with torch.no_grad():
        per_patch = torch.stack([f(volume[:, :, n]) for n in range(4)], dim=1)
        assert torch.allclose(g.eval()(volume), per_patch, atol=1e-4)
