"""Baseline defenses evaluated next to f and g: the protocol (`Defense`, `DefendedModel`, `TrainBudget`) and
the shared training loop. The built-in defenses live in `voldefense.plugins.defenses` and are built through
the registry (``get_registry().get("defense", name).build(**options)``)."""

from voldefense.defenses.base import (
    BatchTransform,
    DefendedModel,
    Defense,
    ModelFactory,
    TrainBudget,
    Trainer,
    run_training,
    straight_through,
    train_classifier,
)

__all__ = [
    "BatchTransform",
    "DefendedModel",
    "Defense",
    "ModelFactory",
    "Trainer",
    "TrainBudget",
    "run_training",
    "straight_through",
    "train_classifier",
]
