"""Attack infrastructure shared by the attack plugins: the result record and small helpers."""

from voldefense.attacks.base import Attack, AttackResult, predict_logits, preserve_mode

__all__ = ["Attack", "AttackResult", "predict_logits", "preserve_mode"]
