"""voldefense: proactive defense against localized adversarial attacks by volumization.

The heavy parts (torch models, the volumizer) are imported lazily, so `import voldefense` and plugin listing
stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Volumizer": "voldefense.volumizer",
    "rank_samples": "voldefense.ranking",
    "build_model": "voldefense.models.factory",
    "DefendedClassifier": "voldefense.models.defended",
    "get_registry": "voldefense.registry",
    "load_model": "voldefense.loading",
    "load_classifier": "voldefense.loading",
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'voldefense' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
