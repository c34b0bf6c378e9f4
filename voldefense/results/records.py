"""The records of a run's results (see `voldefense.results`) and the one definition of the worst case."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from voldefense.jsonio import strict

RESULTS_VERSION = 2


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.1f}%"


# -- the worst case ------------------------------------------------------------------------------------------


def worst_case(survived: Sequence[Sequence[bool]]) -> tuple[bool, ...]:
    """Per image, True when it survived every member of `survived` (one per-image sequence per attack or view).

    Members that ran on different numbers of images are compared on the images they share: the evaluation subset
    is one fixed order, so the first n images are the same for every attack."""
    if not survived:
        return ()
    shared = min(len(s) for s in survived)
    return tuple(all(bool(s[i]) for s in survived) for i in range(shared))


def share(flags: Sequence[bool]) -> float:
    """The share of True values (NaN for none)."""
    return sum(1 for f in flags if f) / len(flags) if len(flags) else math.nan


# -- records -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertifiedCell:
    """Certified accuracy of one model at one patch area (correct and certified for every square of that side)."""

    area: float
    square_side: int
    images: int
    accuracy: float


@dataclass(frozen=True)
class ModelEntry:
    """One report row: how the model was built (`details`: backbone, loss, ranking, ... or, for a defense, its
    plugin, options and views) and its per-model figures, filled in by training and evaluation."""

    kind: str  # "f", "g", "ablation" or "defense"
    description: str
    parameters: int
    details: Mapping[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    train_seconds: float | None = None
    clean_accuracy: float | None = None
    clean_images: int | None = None
    inference_ms_per_image: float | None = None
    certified: tuple[CertifiedCell, ...] = ()
    certified_note: str = ""
    one_pixel_exhaustive_accuracy: float | None = None
    forward_passes_per_image: float | None = None  # models that count their classifier calls (PatchCleanser)


@dataclass(frozen=True)
class AttackInfo:
    """One configured attack: its plugin and what its spec declares."""

    plugin: str
    size_unit: str
    white_box: bool
    sizes: tuple[float, ...]
    images: int
    options: Mapping[str, Any] = field(default_factory=dict)
    adaptive: bool = True  # False: a fixed protocol that does not search (its figure is an upper bound)
    exact: bool = False  # exhaustive over its candidate set


@dataclass(frozen=True)
class ViewFigures:
    """One attack view of a defense (e.g. median filter `naive` / `bpda`) at one row."""

    attacked_accuracy: float
    robust_accuracy: float


@dataclass(frozen=True)
class Row:
    """One model attacked by one attack at one size (definitions in docs/evaluation.md).

    `survived[i]`: image i was classified correctly clean and after every attacked copy (under every view)."""

    model: str
    attack: str
    size: float | int
    size_unit: str
    num_images: int
    num_copies: int
    clean_accuracy: float
    attacked_accuracy: float
    robustness_delta: float
    defense_success_rate: float
    attack_success_rate: float
    mean_queries: float
    seconds_per_image: float
    survived: tuple[bool, ...]
    views: Mapping[str, ViewFigures] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        """The share of images that survived every attacked copy: the per-attack term of the worst case."""
        return share(self.survived)

    @property
    def key(self) -> tuple[str, str, float]:
        return (self.model, self.attack, float(self.size))

    @property
    def budget(self) -> tuple[str, str, float]:
        return (self.model, self.size_unit, float(self.size))


@dataclass(frozen=True)
class WorstCaseCell:
    """Robust accuracy of one model at one budget over every attack run there (`worst_case`).

    `adaptive` is False when every attack at this budget is a fixed protocol that does not search: the figure is
    then an upper bound from weak attacks, not comparable with budgets an adaptive attack reached."""

    model: str
    size_unit: str
    size: float | int
    attacks: tuple[str, ...]
    images: int
    robust_accuracy: float
    adaptive: bool = True


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
        return {**strict(asdict(self)), "applicable": self.applicable, "message": self.message}


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
        return {**strict(asdict(self)), "message": self.message}


@dataclass(frozen=True)
class ConvergenceRecord:
    """A budget-convergence check of one model at one budget; `base_survived` is the checked row's per-image
    outcome, so a resumed evaluation keeps the check only while that row is unchanged."""

    model: str
    size_unit: str
    size: float | int
    check: ConvergenceCheck
    doubled_options: Mapping[str, Any] | None
    base_survived: tuple[bool, ...]

    @property
    def key(self) -> tuple[str, str, float, str, tuple[bool, ...]]:
        return (self.model, self.size_unit, float(self.size), self.check.attack, self.base_survived)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    classes: int
    image_shape: tuple[int, ...]


@dataclass(frozen=True)
class RunResults:
    """Everything a run measured (see the module doc)."""

    dataset: DatasetInfo
    models: Mapping[str, ModelEntry]
    attacks: Mapping[str, AttackInfo] = field(default_factory=dict)
    rows: tuple[Row, ...] = ()
    worst_case: tuple[WorstCaseCell, ...] = ()
    convergence: tuple[ConvergenceRecord, ...] = ()
    masking: tuple[MaskingCheck, ...] = ()
    complete: bool = False
    version: int = RESULTS_VERSION

    def row(self, model: str, attack: str, size: float) -> Row | None:
        return next((r for r in self.rows if r.key == (model, attack, float(size))), None)

    def with_model(self, name: str, **changes: Any) -> RunResults:
        """A copy with `changes` applied to one model entry."""
        return replace(self, models={**self.models, name: replace(self.models[name], **changes)})


def worst_case_cells(rows: Iterable[Row], attacks: Mapping[str, AttackInfo] | None = None) -> tuple[WorstCaseCell, ...]:
    """Per model and budget (size unit and size), in row order: the robust accuracy over every attack run there."""
    groups: dict[tuple[str, str, float], list[Row]] = {}
    for row in rows:
        groups.setdefault(row.budget, []).append(row)
    adaptive = {label: info.adaptive for label, info in (attacks or {}).items()}
    cells = []
    for (model, unit, _), members in groups.items():
        robust = worst_case([r.survived for r in members])
        cells.append(
            WorstCaseCell(
                model,
                unit,
                members[0].size,
                tuple(r.attack for r in members),
                len(robust),
                share(robust),
                any(adaptive.get(r.attack, True) for r in members),
            )
        )
    return tuple(cells)
