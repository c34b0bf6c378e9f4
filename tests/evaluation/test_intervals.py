"""Wilson intervals against published values, edge cases, and the per-seed summary."""

from __future__ import annotations

import pytest

from voldefense.errors import UsageError
from voldefense.evaluation.intervals import format_accuracy, mean_spread, wilson_interval


def test_wilson_matches_a_textbook_value():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)


def test_wilson_is_not_degenerate_at_zero_and_one():
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and 0.05 < high < 0.09
    low, high = wilson_interval(50, 50)
    assert 0.91 < low < 0.95 and high == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bad_counts_are_usage_errors():
    for successes, n in ((5, 4), (-1, 4), (1, -1), (float("nan"), 3)):
        with pytest.raises(UsageError):
            wilson_interval(successes, n)


def test_format_and_spread():
    assert format_accuracy(0.5, 100) == "50.0 [40.4, 59.6]"
    assert format_accuracy(0.5, 0) == "-"
    assert mean_spread([0.8, 0.9, 1.0]) == pytest.approx((0.9, 0.1))
    assert mean_spread([0.7]) == (0.7, 0.0)
