"""Robustness evaluation: run an attack, record per-image outcomes, summarise them, take the worst case."""

from voldefense.evaluation.metrics import (
    AttackOutcome,
    AttackSummary,
    WorstCase,
    evaluate_attack,
    is_stochastic,
    summarize,
    worst_case,
)

__all__ = [
    "AttackOutcome",
    "AttackSummary",
    "WorstCase",
    "evaluate_attack",
    "is_stochastic",
    "summarize",
    "worst_case",
]
