"""Shared fixtures: a fresh plugin registry per test, deterministic seeds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from voldefense.registry import Registry
from voldefense.testing import fit, make_toy_images, tiny_cnn


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry with the built-in plugins and no entry points; installed as the process-wide one."""
    registry = Registry(load_entry_points=False)
    # get_registry() looks _cached_registry up at call time, so every importer sees the fresh one; monkeypatch
    # restores the cached factory afterwards.
    monkeypatch.setattr("voldefense.registry._cached_registry", lambda strict: registry)
    yield registry


@pytest.fixture
def user_backbones(fresh_registry):
    """`fresh_registry` with the test networks of tests/user_networks.py as backbones `user_convnext`, `user_vit`."""
    from user_networks import backbone_plugin

    plugin = backbone_plugin()
    fresh_registry.register(plugin, origin="test")
    try:
        yield fresh_registry
    finally:
        fresh_registry.unregister(plugin)


@pytest.fixture(scope="module")
def trained():
    """(model, test images, test labels): tiny_cnn fitted on 256 toy images, 24 held-out toy images.

    Module scope: trained once per test module (seconds on CPU) and shared by that module's tests only, so a
    test that switches the model's mode must restore it, as the mode-preservation tests check.
    """
    torch.manual_seed(0)
    x, y = make_toy_images(256, seed=0)
    model = tiny_cnn()
    fit(model, x, y, epochs=6)
    xt, yt = make_toy_images(24, seed=1)
    return model, xt, yt


@pytest.fixture
def fake_cifar(tmp_path):
    """A folder with CIFAR-shaped train.npz (40 images) and test.npz (20), random pixels, labels 0..9 in turn."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20)):
        np.savez(
            tmp_path / f"{split}.npz",
            x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            y=np.arange(n) % 10,
        )
    return tmp_path
