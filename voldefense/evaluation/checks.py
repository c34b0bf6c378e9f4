"""Evaluation-rigor checks over attack results (docs/rigor.md): budget convergence and gradient masking.

Both follow the checklist of Carlini et al. (2019, "On Evaluating Adversarial Robustness"):

- **budget convergence**: rerun the strongest attack with twice its iterations / queries; if robust accuracy
  still drops by more than a tolerance, the reported figure had not converged (the attack was under-budgeted);
- **gradient masking**: when a black-box attack beats every white-box attack at the same budget, the
  gradients the white-box attacks follow are probably masked or obfuscated (Athalye et al. 2018), and the
  white-box figures overstate robustness.

The functions are pure: they take results and return small frozen records (`voldefense.results`) with a one-line
`message` for the report. A result is an `AttackOutcome` or a run's `Row`. The figure compared is the attack's
**robust accuracy**: the share of images classified correctly clean and after every attacked copy, the
per-attack term of the worst case (`voldefense.results.worst_case`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from voldefense.errors import ArgumentTypeError, ConfigError
from voldefense.results import ConvergenceCheck, MaskingCheck, Row, share, worst_case

__all__ = [  # the check records live with the other result records; they are part of this module's API
    "ConvergenceCheck",
    "MaskingCheck",
    "budget_convergence",
    "budget_groups",
    "double_budget",
    "gradient_masking",
    "masking_checks",
    "not_doubled_reason",
    "robust_accuracy_of",
    "robust_mask",
    "strongest_attack",
]

Result = Any  # AttackOutcome | voldefense.results.Row


def robust_mask(result: Result) -> tuple[bool, ...]:
    """Per image: classified correctly clean and after every attacked copy (a `Row`'s `survived`)."""
    if isinstance(result, Row):
        return result.survived
    survived = getattr(result, "survived", None)
    if not callable(survived):
        raise ArgumentTypeError(
            f"cannot read per-image outcomes from {type(result).__name__}: pass an AttackOutcome or a Row"
        )
    return tuple(survived())


def robust_accuracy_of(result: Result) -> float:
    """The robust accuracy of one attack result (see the module doc)."""
    return share(robust_mask(result))


# -- budget convergence -------------------------------------------------------------------------------------


def _attack_spec(attack: Any, registry: Any) -> Any:
    """`attack` itself when it is a spec, else the attack spec registered under that name (None: unknown)."""
    if not isinstance(attack, str):
        return attack
    if registry is None:
        from voldefense.registry import get_registry

        registry = get_registry()
    try:
        return registry.get("attack", attack)
    except LookupError:
        return None


def budget_keys(
    attack: Any, options: Mapping[str, Any] | None = None, *, registry: Any = None
) -> tuple[str, ...] | None:
    """The budget options `double_budget` scales for `attack` (an `AttackSpec`, or a name looked up in
    `registry`) run with `options`, as its spec declares them (`AttackSpec.budget_options`); None: unknown
    attack."""
    spec = _attack_spec(attack, registry)
    return None if spec is None else spec.budget_keys(dict(options or {}))


def double_budget(
    attack: Any, options: Mapping[str, Any] | None = None, *, registry: Any = None
) -> dict[str, Any] | None:
    """`options` with every budget option of `attack` (an `AttackSpec`, or a name looked up in `registry`)
    doubled, defaults read from the plugin's factory.

    Returns None when the attack is unknown or declares no budget to double (exact / fixed-protocol attacks),
    or a default cannot be read; the convergence check then reports "not applicable" (`not_doubled_reason`).
    """
    spec = _attack_spec(attack, registry)
    keys = None if spec is None else spec.budget_keys(dict(options or {}))
    if not keys:
        return None
    out = dict(options or {})
    defaults = spec.option_defaults()
    for key in keys:
        value = out.get(key, defaults.get(key))
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        out[key] = 2 * value
    return out


def not_doubled_reason(attack: Any, *, registry: Any = None) -> str:
    """Why `double_budget` has nothing to double for `attack` (a spec or a name), from what its spec declares."""
    spec = _attack_spec(attack, registry)
    if spec is None:
        return f"{attack} is not a registered attack"
    if spec.exact:
        return "exhaustive over its candidate set (exact, nothing to double)"
    if not spec.adaptive:
        return "a fixed protocol, not an optimisation"
    if not spec.budget_options:
        return f"{spec.name} declares no budget option to double"
    return f"a budget option of {spec.name} has no integer value to double"


def strongest_attack(results_by_attack: Mapping[str, Result]) -> str | None:
    """The attack with the lowest robust accuracy (the first listed on ties); None for no results."""
    best, best_acc = None, math.inf
    for name, result in results_by_attack.items():
        acc = robust_accuracy_of(result)
        if not math.isnan(acc) and acc < best_acc:
            best, best_acc = name, acc
    return best


def budget_convergence(
    outcome_base: Result, outcome_doubled: Result, tolerance: float = 0.02, *, attack: str = ""
) -> ConvergenceCheck:
    """Compare the strongest attack at its budget with the same attack at twice the budget, on the same
    images; it holds when robust accuracy drops by at most `tolerance` (a fraction, 0.02 = 2 points)."""
    if not 0.0 <= float(tolerance) < 1.0:
        raise ConfigError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    base_mask, doubled_mask = robust_mask(outcome_base), robust_mask(outcome_doubled)
    if len(base_mask) != len(doubled_mask):
        raise ConfigError(
            f"budget_convergence needs both runs on the same images ({len(base_mask)} vs {len(doubled_mask)})"
        )
    base, doubled = robust_accuracy_of(outcome_base), robust_accuracy_of(outcome_doubled)
    drop = base - doubled
    return ConvergenceCheck(bool(drop <= float(tolerance) + 1e-12), attack, base, doubled, drop, float(tolerance))


# -- gradient masking ---------------------------------------------------------------------------------------


def gradient_masking(
    outcomes_by_attack: Mapping[str, Result],
    white_box: Mapping[str, bool],
    *,
    tolerance: float = 0.02,
    size_unit: str | Mapping[str, str] | None = None,
    model: str = "",
) -> MaskingCheck:
    """Flag when a black-box attack beats every white-box attack on the same budget by more than `tolerance`.

    All results must be at one budget: their sizes (an `AttackOutcome`'s `size`, a row's ``size``) must agree,
    and so must their size units when given (one unit, or one per attack; rows carry ``size_unit``).
    `white_box[name]` says each attack's kind (`AttackSpec.white_box`). Use `masking_checks` for whole runs.
    """
    if not 0.0 <= float(tolerance) < 1.0:
        raise ConfigError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    missing = sorted(set(outcomes_by_attack) - set(white_box))
    if missing:
        raise ConfigError(f"white_box has no entry for attack(s) {', '.join(missing)}")
    units = {_unit(name, result, size_unit) for name, result in outcomes_by_attack.items()} - {None}
    sizes = {_size(r) for r in outcomes_by_attack.values()} - {None}
    if len(units) > 1 or len(sizes) > 1:
        raise ConfigError(
            "gradient_masking compares attacks at one budget only; got size units "
            f"{sorted(units)} and sizes {sorted(sizes)} (group them with masking_checks)"
        )
    # Attacks run on different numbers of images are compared on the images they share (the evaluation subset is
    # one fixed order), as the worst case is: otherwise sample noise alone could raise the flag.
    shared = min((len(m) for m in map(robust_mask, outcomes_by_attack.values())), default=0)
    masks = {n: robust_mask(r)[:shared] for n, r in outcomes_by_attack.items()}
    accs = {n: share(m) for n, m in masks.items()}
    black = {n: a for n, a in accs.items() if not white_box[n] and not math.isnan(a)}
    white = {n: a for n, a in accs.items() if white_box[n] and not math.isnan(a)}
    unit = next(iter(units), "")
    size = next(iter(sizes), math.nan)
    if not black or not white:
        return MaskingCheck(
            False, False, unit, size, None, math.nan, None, math.nan, math.nan, float(tolerance), None, model
        )
    best_b = min(black, key=black.__getitem__)
    best_w = min(white, key=white.__getitem__)
    gap = white[best_w] - black[best_b]
    survived_black = worst_case([masks[n] for n in black])
    survived_white = worst_case([masks[n] for n in white])
    only = sum(w and not b for b, w in zip(survived_black, survived_white, strict=True))
    return MaskingCheck(
        bool(gap > float(tolerance) + 1e-12),
        True,
        unit,
        size,
        best_b,
        black[best_b],
        best_w,
        white[best_w],
        gap,
        float(tolerance),
        only,
        model,
    )


def _unit(name: str, result: Result, size_unit: str | Mapping[str, str] | None) -> str | None:
    if isinstance(size_unit, str):
        return size_unit
    if isinstance(size_unit, Mapping) and name in size_unit:
        return size_unit[name]
    return result.size_unit if isinstance(result, Row) else None


def _size(result: Result) -> float | None:
    size = getattr(result, "size", None)
    if size is None or (isinstance(size, float) and math.isnan(size)):
        return None
    return float(size)


def budget_groups(rows: Sequence[Row]) -> dict[tuple[str, str, float], dict[str, Row]]:
    """A run's rows grouped per (model, size unit, size), each group keyed by attack label, in row order."""
    groups: dict[tuple[str, str, float], dict[str, Row]] = {}
    for row in rows:
        groups.setdefault(row.budget, {})[row.attack] = row
    return groups


def masking_checks(
    rows: Sequence[Row], white_box: Mapping[str, bool], *, tolerance: float = 0.02
) -> list[MaskingCheck]:
    """One `MaskingCheck` per model and budget of a run's rows; `white_box` maps attack labels to their kind
    (`AttackInfo.white_box`)."""
    return [
        gradient_masking(group, white_box, tolerance=tolerance, size_unit=unit, model=model)
        for (model, unit, _), group in budget_groups(rows).items()
    ]
