"""Confidence intervals for accuracies: the Wilson score interval of a binomial proportion.

An accuracy measured on n images is a binomial proportion k/n. The Wilson interval keeps its coverage near the
nominal level for small n and for proportions near 0 or 1 — exactly where robust accuracies under attack live
— where the normal ("Wald") interval collapses to zero width at 0% or 100%.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from voldefense.errors import UsageError
from voldefense.verdict import wilson_interval as _wilson

Z_95 = 1.959963984540054  # two-sided 95% normal quantile (voldefense.verdict.Z95)


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval `(low, high)` of `successes` out of `n` (a fraction in [0, 1] each end).

    `successes` may be a float (accuracy x n, e.g. from an averaged protocol); n = 0 gives (0, 1).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UsageError(f"n must be a non-negative integer, got {n!r}")
    if not 0 <= successes <= n or math.isnan(successes):
        raise UsageError(f"successes must lie in [0, n={n}], got {successes!r}")
    if n == 0:
        return 0.0, 1.0
    low, high = _wilson(successes, n, z)  # the report's formula (voldefense.verdict), with checked arguments
    # The bounds at k = 0 and k = n are exactly 0 and 1; computed, they carry a rounding error of ~1e-17.
    low = 0.0 if successes == 0 else low
    high = 1.0 if successes == n else high
    return low, high


def format_accuracy(accuracy: float, n: int) -> str:
    """``"87.3 [86.6, 87.9]"``: an accuracy in % with its 95% Wilson interval over n images."""
    if n <= 0 or accuracy != accuracy:
        return "-"
    low, high = wilson_interval(accuracy * n, n)
    return f"{100 * accuracy:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of per-seed figures."""
    if not values:
        raise UsageError("mean_spread needs at least one value")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
