"""The verdict opening report.md: figures with n and 95% Wilson intervals, the sign of the difference in words."""

from __future__ import annotations

import dataclasses

import pytest
from results_fixtures import attack, results_fixture, row

from voldefense.results import worst_case_cells
from voldefense.verdict import compare, summary, verdict_lines, wilson_interval


def test_wilson_interval_matches_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # not the degenerate [0, 0]
    assert wilson_interval(100, 100)[1] == pytest.approx(1.0)


def with_rows(*rows):
    attacks = {
        "sparse_pgd": attack("sparse_pgd", "pixels", True),
        "random_pixels": attack("random_pixels", "pixels", False, adaptive=False),
    }
    base = results_fixture()
    return dataclasses.replace(base, attacks=attacks, rows=rows, worst_case=worst_case_cells(rows, attacks))


def test_less_robust_at_every_budget_in_words():
    n = 200
    results = with_rows(
        row("f", "sparse_pgd", 1, "pixels", "1" * 150 + "0" * 50),
        row("g", "sparse_pgd", 1, "pixels", "1" * 50 + "0" * 150),
        row("f", "sparse_pgd", 4, "pixels", "1" * 100 + "0" * 100),
        row("g", "sparse_pgd", 4, "pixels", "1" * 10 + "0" * 190),
    )
    comparisons = compare(results, "g")
    assert [c.size for c in comparisons] == [1.0, 4.0] and all(c.model.n == n for c in comparisons)
    assert summary("g", comparisons) == "g is less robust than f at every budget measured."
    text = "\n".join(verdict_lines(results))
    assert "| worst case 1 px | 25.0% [19.5, 31.4] (n=200) | 75.0% [68.6, 80.5] (n=200) | -50.0 points |" in text


def test_mixed_signs_overlap_and_non_adaptive_budgets_are_said():
    results = with_rows(
        row("f", "sparse_pgd", 1, "pixels", "1100"),
        row("g", "sparse_pgd", 1, "pixels", "1110"),
        row("f", "sparse_pgd", 4, "pixels", "1100"),
        row("g", "sparse_pgd", 4, "pixels", "1000"),
        row("f", "random_pixels", 64, "pixels", "0000"),
        row("g", "random_pixels", 64, "pixels", "1111"),
    )
    said = summary("g", compare(results, "g"))
    assert said.startswith("g is more robust than f at 1 px; less robust than f at 4 px")
    assert "the 95% intervals overlap" in said  # 4 images: nothing here is beyond sampling noise
    assert "64 px" not in said  # random_pixels only: an upper bound, kept out of the words
    lines = verdict_lines(results)
    assert any(line.startswith("| worst case 64 px † |") for line in lines)
    assert lines[-1].startswith("† only non-adaptive attacks")


def test_no_verdict_without_f():
    results = results_fixture()
    assert verdict_lines(dataclasses.replace(results, models={"g": results.models["g"]})) == []
