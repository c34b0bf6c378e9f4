"""Make the voldefense-extras source importable in-process (CI installs only voldefense itself) and give
tests a registry with the extras registered exactly as its entry point would register them."""

from __future__ import annotations

import pytest
from extras_paths import EXTRAS_DIST, make_extras_importable

make_extras_importable()


@pytest.fixture
def extras_registry():
    """Built-ins plus the extras' plugin module, attributed to the distribution name, no entry points."""
    import voldefense_extras.plugin

    from voldefense.registry import Registry

    registry = Registry(load_entry_points=False)
    registry.register(voldefense_extras.plugin, origin=EXTRAS_DIST, name=f"{EXTRAS_DIST}:extras")
    ours = {origin: msg for origin, msg in registry.failures.items() if origin.startswith(EXTRAS_DIST)}
    assert not ours, ours
    return registry
