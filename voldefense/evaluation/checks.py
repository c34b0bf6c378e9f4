"""Evaluation-rigor checks over attack results (docs/rigor.md): budget convergence and gradient masking.

Both follow the checklist of Carlini et al. (2019, "On Evaluating Adversarial Robustness"):

- **budget convergence**: rerun the strongest attack with twice its iterations / queries; if robust accuracy
  still drops by more than a tolerance, the reported figure had not converged (the attack was under-budgeted);
- **gradient masking**: when a black-box attack beats every white-box attack at the same budget, the
  gradients the white-box attacks follow are probably masked or obfuscated (Athalye et al. 2018), and the
  white-box figures overstate robustness.

The functions are pure: they take results and return small frozen records with `as_dict()` (JSON-ready) and a
one-line `message` for the report. A result is an `AttackOutcome` or a runner row (a mapping with the per-image
``survived`` string, else ``attacked_accuracy``). The figure compared is the attack's **robust accuracy**: the
share of images classified correctly clean and after every attacked copy, the per-attack term of the
worst case (`voldefense.evaluation.worst_case`); a row without per-image data falls back to its attacked
accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from voldefense.errors import ConfigError

Result = Any  # AttackOutcome | Mapping[str, Any] (a runner row)


def robust_accuracy_of(result: Result) -> float:
    """The robust accuracy of one attack result (see the module doc)."""
    if isinstance(result, Mapping):
        survived = result.get("survived")
        if isinstance(survived, str):
            return survived.count("1") / len(survived) if survived else math.nan
        if "attacked_accuracy" in result:
            return float(result["attacked_accuracy"])
        raise ConfigError("a result row needs 'survived' or 'attacked_accuracy' to be checked")
    clean = getattr(result, "clean_correct", None)
    adversarial = getattr(result, "adversarial_correct", None)
    if clean is None or adversarial is None:
        raise ConfigError(
            f"cannot read a robust accuracy from {type(result).__name__}: pass an AttackOutcome or a result row"
        )
    robust = clean & adversarial.all(0)
    return float(robust.float().mean()) if robust.numel() else math.nan


def _robust_mask(result: Result) -> list[bool] | None:
    if isinstance(result, Mapping):
        survived = result.get("survived")
        return [c == "1" for c in survived] if isinstance(survived, str) else None
    return (result.clean_correct & result.adversarial_correct.all(0)).tolist()


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.1f}%"


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


@dataclass(frozen=True)
class ConvergenceCheck:
    """Rerunning `attack` with doubled budget moved robust accuracy from `base_acc` to `doubled_acc`.

    `held`: True when ``drop = base_acc - doubled_acc <= tolerance``; False when it dropped more (the base
    budget had not converged); None when the check was not applicable (`reason` says why).
    """

    held: bool | None
    attack: str
    base_acc: float
    doubled_acc: float
    drop: float
    tolerance: float
    reason: str = ""

    @property
    def applicable(self) -> bool:
        return self.held is not None

    @classmethod
    def not_applicable(cls, attack: str, reason: str, tolerance: float = 0.02) -> ConvergenceCheck:
        return cls(None, attack, math.nan, math.nan, math.nan, float(tolerance), reason)

    @property
    def message(self) -> str:
        if self.held is None:
            return f"budget convergence of {self.attack}: not applicable ({self.reason})"
        verdict = "held" if self.held else "FAILED"
        return (
            f"budget convergence of {self.attack}: {verdict} — robust accuracy {_fmt(self.base_acc)} -> "
            f"{_fmt(self.doubled_acc)} with twice the budget (drop {100 * self.drop:.1f} points, tolerance "
            f"{100 * self.tolerance:.1f})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**_finite(asdict(self)), "applicable": self.applicable, "message": self.message}


def budget_convergence(
    outcome_base: Result, outcome_doubled: Result, tolerance: float = 0.02, *, attack: str = ""
) -> ConvergenceCheck:
    """Compare the strongest attack at its budget with the same attack at twice the budget, on the same
    images; it holds when robust accuracy drops by at most `tolerance` (a fraction, 0.02 = 2 points)."""
    if not 0.0 <= float(tolerance) < 1.0:
        raise ConfigError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    base_mask, doubled_mask = _robust_mask(outcome_base), _robust_mask(outcome_doubled)
    if base_mask is not None and doubled_mask is not None and len(base_mask) != len(doubled_mask):
        raise ConfigError(
            f"budget_convergence needs both runs on the same images ({len(base_mask)} vs {len(doubled_mask)})"
        )
    base, doubled = robust_accuracy_of(outcome_base), robust_accuracy_of(outcome_doubled)
    drop = base - doubled
    return ConvergenceCheck(bool(drop <= float(tolerance) + 1e-12), attack, base, doubled, drop, float(tolerance))


# -- gradient masking ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskingCheck:
    """Black-box vs white-box attacks at one budget (`size_unit`, `size`).

    `flagged`: the best black-box attack's robust accuracy is below the best white-box attack's by more than
    `tolerance` — a sign of gradient masking (or of weak white-box attacks). `black_box_only`: images some
    black-box attack broke and no white-box attack did (a finer, per-image view; informative, not the flag).
    `applicable` is False when the budget has no attack of one of the two kinds.
    """

    flagged: bool
    applicable: bool
    size_unit: str
    size: float
    best_black_box: str | None
    best_black_box_acc: float
    best_white_box: str | None
    best_white_box_acc: float
    gap: float
    tolerance: float
    black_box_only: int | None
    model: str = ""

    @property
    def message(self) -> str:
        where = f"{self.model + ' ' if self.model else ''}at {self.size_unit} {self.size:g}"
        if not self.applicable:
            return f"gradient masking check {where}: not applicable (needs black- and white-box attacks)"
        if self.flagged:
            return (
                f"gradient masking check {where}: FLAGGED — black-box {self.best_black_box} "
                f"({_fmt(self.best_black_box_acc)}) beats every white-box attack (best {self.best_white_box}, "
                f"{_fmt(self.best_white_box_acc)}) by {100 * self.gap:.1f} points"
            )
        return (
            f"gradient masking check {where}: ok — best white-box {self.best_white_box} "
            f"({_fmt(self.best_white_box_acc)}) vs best black-box {self.best_black_box} "
            f"({_fmt(self.best_black_box_acc)})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**_finite(asdict(self)), "message": self.message}


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
    masks = {n: _robust_mask(r) for n, r in outcomes_by_attack.items()}
    shared = min((len(m) for m in masks.values() if m is not None), default=0)
    if all(m is not None for m in masks.values()) and shared:
        # Attacks run on different numbers of images are compared on the images they share (the evaluation
        # subset is one fixed order), as the worst case is: otherwise sample noise alone could raise the flag.
        accs = {n: sum(m[:shared]) / shared for n, m in masks.items()}  # type: ignore[index]
    else:
        accs = {name: robust_accuracy_of(r) for name, r in outcomes_by_attack.items()}
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
    only: int | None = None
    if all(m is not None for m in masks.values()):
        n_img = shared
        broken_b = [any(not masks[n][i] for n in black) for i in range(n_img)]  # type: ignore[index]
        broken_w = [any(not masks[n][i] for n in white) for i in range(n_img)]  # type: ignore[index]
        only = sum(b and not w for b, w in zip(broken_b, broken_w, strict=True))
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
    return result.get("size_unit") if isinstance(result, Mapping) else None


def _size(result: Result) -> float | None:
    size = result.get("size") if isinstance(result, Mapping) else getattr(result, "size", None)
    if size is None or (isinstance(size, float) and math.isnan(size)):
        return None
    return float(size)


def budget_groups(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, float], dict[str, Mapping]]:
    """Runner rows grouped per (model, size unit, size), each group keyed by attack label, in row order."""
    groups: dict[tuple[str, str, float], dict[str, Mapping]] = {}
    for row in rows:
        key = (str(row["model"]), str(row["size_unit"]), float(row["size"]))
        groups.setdefault(key, {})[str(row["attack"])] = row
    return groups


def masking_checks(
    rows: Sequence[Mapping[str, Any]], white_box: Mapping[str, bool], *, tolerance: float = 0.02
) -> list[MaskingCheck]:
    """One `MaskingCheck` per model and budget of a run's result rows (``results["rows"]``); `white_box` maps
    attack labels to their kind (``results["attacks"][label]["white_box"]``)."""
    return [
        gradient_masking(group, white_box, tolerance=tolerance, size_unit=unit, model=model)
        for (model, unit, _), group in budget_groups(rows).items()
    ]


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """NaN -> None, so `json.dumps` writes valid JSON (`null`)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
