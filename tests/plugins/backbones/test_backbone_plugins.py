"""Backbone plugins: registered, cheap to list, and each converts and runs (contract test)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from voldefense.models.factory import build_model
from voldefense.specs import BackboneSpec

NAMES = ["efficientnet_b0", "inception_v3", "resnet50", "vgg16"]


def test_all_four_registered(fresh_registry):
    assert set(NAMES) <= set(fresh_registry.names("backbone"))
    for name in NAMES:
        spec = fresh_registry.get("backbone", name)
        assert isinstance(spec, BackboneSpec) and spec.converter is None  # the generic converter


def test_listing_backbones_imports_no_model_code():
    code = (
        "import sys; from voldefense.registry import Registry; r = Registry(load_entry_points=False); "
        "r.names('backbone'); r.names('loss'); "
        "print([m for m in sys.modules if m.startswith('voldefense.models')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugin_converter_is_used(fresh_registry):
    calls = []

    def converter(model, *, depth_kernel=3):
        calls.append(depth_kernel)
        from voldefense.models.convert import convert_to_3d

        return convert_to_3d(model, depth_kernel=depth_kernel)

    class Plugin:
        from voldefense.hookspecs import hookimpl

        @hookimpl
        def voldefense_backbones(self):
            from voldefense.testing import tiny_cnn

            yield BackboneSpec(
                name="tiny",
                factory=lambda num_classes: tiny_cnn(num_classes),
                description="tiny",
                converter=converter,
            )

    plugin = Plugin()
    fresh_registry.register(plugin, origin="test")
    try:
        g = build_model("tiny", dims=3, num_classes=2, depth_kernel=5)
        assert calls == [5]
        assert g(torch.rand(1, 3, 4, 16, 16)).shape == (1, 4, 2)
        from voldefense.errors import ConfigError

        with pytest.raises(ConfigError, match="pool_depth"):
            build_model("tiny", dims=3, num_classes=2, pool_depth=True)
    finally:
        fresh_registry.unregister(plugin)
