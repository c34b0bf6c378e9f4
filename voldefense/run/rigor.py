"""The rigor checks over a run's rows (docs/rigor.md): the worst case per budget, gradient masking and budget
convergence; and the exact one-pixel figure copied into each model's entry."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace

import torch

from voldefense.evaluation.checks import (
    ConvergenceCheck,
    budget_convergence,
    budget_groups,
    double_budget,
    masking_checks,
    not_doubled_reason,
    robust_accuracy_of,
    strongest_attack,
)
from voldefense.results import ConvergenceRecord, RunResults, worst_case_cells
from voldefense.run.data import RunData
from voldefense.run.grid import EvalTarget, build_attack, measure_row
from voldefense.run.resolve import Resolved

logger = logging.getLogger(__name__)


def with_checks(results: RunResults, tolerance: float) -> RunResults:
    """The worst case per model and budget, the masking checks and each model's exact one-pixel figure."""
    white_box = {label: info.white_box for label, info in results.attacks.items()}
    rows = [r for r in results.rows if r.attack in white_box]
    results = replace(
        results,
        worst_case=worst_case_cells(results.rows, results.attacks),
        masking=tuple(masking_checks(rows, white_box, tolerance=tolerance)),
    )
    return with_exact_one_pixel(results)


def with_exact_one_pixel(results: RunResults) -> RunResults:
    """Copy each model's one-pixel accuracy under an exact attack (`AttackSpec.exact`: pixel_exhaustive, over the
    colour-cube corners) into its model entry, for the report's model table."""
    exact = {label for label, info in results.attacks.items() if info.exact and info.size_unit == "pixels"}
    for row in results.rows:
        entry = results.models.get(row.model)
        if row.attack in exact and int(row.size) == 1 and entry and entry.one_pixel_exhaustive_accuracy is None:
            results = results.with_model(row.model, one_pixel_exhaustive_accuracy=row.attacked_accuracy)
    return results


def convergence_checks(
    results: RunResults,
    resolved: Resolved,
    targets: Mapping[str, EvalTarget],
    data: RunData,
    device: torch.device,
    kept: Mapping[tuple, ConvergenceRecord],
) -> Iterator[ConvergenceRecord]:
    """Per model and budget: rerun the strongest attack (lowest robust accuracy) on the same images with the same
    seed and twice its budget (`voldefense.evaluation.checks`); a check in `kept` (an earlier evaluation) for the
    same attack and the same per-image outcome is yielded as it is."""
    tolerance = resolved.config.evaluation.convergence_tolerance
    specs, configs = resolved.attacks, resolved.attack_configs
    for (model, unit, size), group in budget_groups(results.rows).items():
        group = {k: v for k, v in group.items() if k in specs}
        label = strongest_attack(group)
        if label is None or model not in targets:
            continue
        # On a tie for the lowest robust accuracy, check an attack whose budget can be doubled (a tied fixed
        # protocol such as random_pixels would make the check "not applicable" for no reason).
        lowest = robust_accuracy_of(group[label])
        label = next(
            (
                other
                for other, row in group.items()
                if robust_accuracy_of(row) == lowest and double_budget(specs[other], configs[other].options) is not None
            ),
            label,
        )
        row, attack, spec = group[label], configs[label], specs[label]
        key = (model, unit, float(size), label, row.survived)
        if key in kept:
            yield kept[key]
            continue
        doubled = double_budget(spec, attack.options)
        if doubled is None:
            check = ConvergenceCheck.not_applicable(label, not_doubled_reason(spec), tolerance)
        else:
            logger.info("budget convergence: %s with %s at %s, doubled budget", model, label, row.size)
            built = build_attack(attack, spec, targets, options=doubled)
            _, outcome = measure_row(targets[model], label, attack, spec, built, row.size, resolved, data, device)
            check = budget_convergence(row, outcome, tolerance, attack=label)
        yield ConvergenceRecord(model, unit, row.size, check, doubled, row.survived)
