"""Where the voldefense-extras source lives, and its distribution name (shared by the contrib tests; a plain
module rather than `from conftest import ...`, which is ambiguous with several conftest.py files)."""

from __future__ import annotations

import sys
from pathlib import Path

EXTRAS_ROOT = Path(__file__).resolve().parents[2] / "plugins_contrib" / "voldefense-extras"
EXTRAS_SRC = EXTRAS_ROOT / "src"
EXTRAS_DIST = "voldefense-extras"


def make_extras_importable() -> None:
    """CI installs only voldefense itself; the contrib tests import the extras from their source tree."""
    if str(EXTRAS_SRC) not in sys.path:
        sys.path.insert(0, str(EXTRAS_SRC))
