"""Attack infrastructure shared by the attack plugins: the result record and small helpers.

The attack implementations live in submodules (`pgd`, `pixels`, `patch`, `regions`) and are imported from
there, so importing this package stays cheap.
"""

from voldefense.attacks.base import Attack, AttackResult, predict_logits, preserve_mode
from voldefense.attacks.regions import QueryCounter, changed_pixels, patch_sides, pixel_budget

__all__ = [
    "Attack",
    "AttackResult",
    "QueryCounter",
    "changed_pixels",
    "patch_sides",
    "pixel_budget",
    "predict_logits",
    "preserve_mode",
]
