"""The verdict that opens report.md: each defended model against the undefended f, in figures and in words.

For every model other than f: clean accuracy and, at every budget both were attacked at, worst-case robust
accuracy next to f's, each with the number of images behind it and its 95% Wilson score interval, and the sign of
the difference in words ("g is less robust than f at every budget measured"). A budget where only non-adaptive
attacks ran (`AttackInfo.adaptive` false, e.g. random_pixels) is marked: its figure is an upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from voldefense.results import ModelEntry, RunResults, WorstCaseCell

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
NON_ADAPTIVE_NOTE = (
    "† only non-adaptive attacks (fixed protocols such as random_pixels, which do not search) ran at this budget: "
    "the figure is an upper bound on robust accuracy, not comparable with budgets an adaptive attack reached."
)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (NaNs for n = 0); well-behaved at 0 and 1, unlike
    the normal approximation."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Figure:
    """A proportion measured on `n` images, with its 95% interval."""

    value: float
    n: int

    @property
    def interval(self) -> tuple[float, float]:
        if math.isnan(self.value):
            return math.nan, math.nan
        return wilson_interval(round(self.value * self.n), self.n)

    def text(self) -> str:
        if math.isnan(self.value) or self.n <= 0:
            return "—"
        lo, hi = self.interval
        return f"{100 * self.value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (n={self.n})"


@dataclass(frozen=True)
class BudgetComparison:
    size_unit: str
    size: float
    model: Figure
    reference: Figure
    adaptive: bool

    @property
    def sign(self) -> int:
        diff = self.model.value - self.reference.value
        return 0 if abs(diff) < 1e-12 else (1 if diff > 0 else -1)

    @property
    def overlapping(self) -> bool:
        """Whether the two 95% intervals overlap (the difference may be sampling noise)."""
        (a_lo, a_hi), (b_lo, b_hi) = self.model.interval, self.reference.interval
        return a_lo <= b_hi and b_lo <= a_hi


def _budget_label(size_unit: str, size: float) -> str:
    return f"{100 * float(size):g}% area" if size_unit == "area" else f"{int(size)} px"


def _budgets(comparisons: Sequence[BudgetComparison]) -> str:
    return ", ".join(_budget_label(c.size_unit, c.size) for c in comparisons)


def compare(results: RunResults, name: str, reference: str = "f") -> list[BudgetComparison]:
    """Per budget both `name` and `reference` have a worst case, in the report's budget order."""
    cells = {(c.model, c.size_unit, float(c.size)): c for c in results.worst_case}
    budgets = sorted(
        {(c.size_unit, float(c.size)) for c in results.worst_case if c.model == name},
        key=lambda b: (b[0] != "pixels", b[1]),
    )
    out = []
    for unit, size in budgets:
        mine, theirs = cells.get((name, unit, size)), cells.get((reference, unit, size))
        if mine is None or theirs is None:
            continue
        out.append(
            BudgetComparison(
                unit,
                size,
                _figure(mine),
                _figure(theirs),
                adaptive=mine.adaptive and theirs.adaptive,
            )
        )
    return out


def _figure(cell: WorstCaseCell) -> Figure:
    return Figure(cell.robust_accuracy, cell.images)


def summary(name: str, comparisons: Sequence[BudgetComparison], reference: str = "f") -> str:
    """The sign of the differences in words, adaptive budgets first (non-adaptive ones are upper bounds)."""
    adaptive = [c for c in comparisons if c.adaptive]
    measured = adaptive or list(comparisons)
    if not measured:
        return f"{name} and {reference} share no attacked budget."
    words = {1: "more robust than", 0: "as robust as", -1: "less robust than"}
    signs = {c.sign for c in measured}
    where = "every budget measured" if adaptive == list(comparisons) else "every budget an adaptive attack measured"
    if not adaptive:
        where = "every budget measured (non-adaptive attacks only: upper bounds)"
    if len(signs) == 1:
        text = f"{name} is {words[signs.pop()]} {reference} at {where}"
    else:
        parts = [
            f"{words[s]} {reference} at {_budgets([c for c in measured if c.sign == s])}"
            for s in (1, 0, -1)
            if s in signs
        ]
        text = f"{name} is " + "; ".join(parts)
    noise = [c for c in measured if c.sign != 0 and c.overlapping]
    if noise and len(noise) == len(measured) > 1:
        text += (
            "; the 95% intervals overlap at every one of these budgets, so the differences are within sampling noise"
        )
    elif noise:
        text += f"; at {_budgets(noise)} the 95% intervals overlap, so the difference there is within sampling noise"
    return text + "."


def verdict_lines(results: RunResults, reference: str = "f") -> list[str]:
    """The verdict section of report.md (empty when the run has no f to compare with)."""
    if reference not in results.models:
        return []
    ref = results.models[reference]
    lines: list[str] = []
    marked = False
    for name, entry in results.models.items():
        if name == reference:
            continue
        comparisons = compare(results, name, reference)
        clean_diff = _points(entry.clean_accuracy, ref.clean_accuracy)
        rows = [f"| clean accuracy | {_clean(entry)} | {_clean(ref)} | {clean_diff} |"]
        for c in comparisons:
            marked |= not c.adaptive
            rows.append(
                f"| worst case {_budget_label(c.size_unit, c.size)}{'' if c.adaptive else ' †'} | {c.model.text()} | "
                f"{c.reference.text()} | {_points(c.model.value, c.reference.value)} |"
            )
        lines += [
            "",
            f"**{name}** ({entry.description}): {summary(name, comparisons, reference)}",
            "",
            f"| | {name} | {reference} | difference |",
            "|---|---|---|---|",
            *rows,
        ]
    if marked:
        lines += ["", NON_ADAPTIVE_NOTE]
    return lines


def _clean(entry: ModelEntry) -> str:
    if entry.clean_accuracy is None or entry.clean_images is None:
        return "—"
    return Figure(entry.clean_accuracy, entry.clean_images).text()


def _points(a: float | None, b: float | None) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return "—"
    return f"{100 * (a - b):+.1f} points"
