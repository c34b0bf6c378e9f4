"""Fixtures shared by the attack plugin tests (the trained toy model, `trained`, is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from voldefense.registry import Registry


@pytest.fixture(scope="module")
def registry():
    # Built-ins only; a private instance (conftest fresh_registry fails in teardown).
    return Registry(load_entry_points=False)
