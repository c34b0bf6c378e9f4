"""The typed results record: one worst case, one versioned JSON form (strict JSON), version 1 converted."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from results_fixtures import results_fixture, row

from voldefense.errors import ConfigError
from voldefense.results import (
    RESULTS_VERSION,
    ConvergenceCheck,
    ConvergenceRecord,
    from_json,
    to_dict,
    to_json,
    worst_case,
    worst_case_cells,
)


def test_worst_case_is_every_member_over_the_shared_images():
    assert worst_case([(True, True, False), (True, False, True, True)]) == (True, False, False)
    assert worst_case([]) == ()


def test_a_budget_with_only_non_adaptive_attacks_is_marked():
    cells = {(c.model, c.size): c for c in results_fixture().worst_case}
    assert cells[("g", 4)].adaptive is False  # random_pixels only
    assert cells[("g", 1)].adaptive is True  # sparse_pgd ran there too


def test_json_round_trip_is_strict_and_lossless():
    results = dataclasses.replace(
        results_fixture(),
        convergence=(
            ConvergenceRecord(
                "g", "pixels", 1, ConvergenceCheck.not_applicable("random_pixels", "fixed"), None, (True,)
            ),
        ),
    )
    nan_row = dataclasses.replace(row("f", "sparse_pgd", 4, "pixels", "00"), defense_success_rate=math.nan)
    rows = (*results.rows, nan_row)
    results = dataclasses.replace(results, rows=rows, worst_case=worst_case_cells(rows, results.attacks))
    text = to_json(results)
    data = json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict JSON token {token}"))
    assert data["version"] == RESULTS_VERSION
    assert data["rows"][0]["survived"] == [True, True, False, False]
    assert data["rows"][-1]["defense_success_rate"] is None
    back = from_json(text)
    assert to_dict(back) == to_dict(results)
    assert math.isnan(back.rows[-1].defense_success_rate)
    assert back.convergence[0].check.reason == "fixed"


def test_version_1_is_converted():
    v1 = {
        "version": 1,
        "complete": True,
        "dataset": {"name": "synthetic", "classes": 10, "image_shape": [3, 32, 32]},
        "models": {
            "g": {
                "kind": "g",
                "description": "volumized",
                "loss": "pal",
                "parameters": 7,
                "clean_accuracy": 0.5,
                "certified": {"0.04": {"area": 0.04, "square_side": 7, "images": 4, "accuracy": 0.25}},
            }
        },
        "attacks": {
            "sparse_pgd": {
                "plugin": "sparse_pgd",
                "size_unit": "pixels",
                "white_box": True,
                "sizes": [1],
                "images": 4,
                "options": {},
            }
        },
        "rows": [{**dataclasses.asdict(row("g", "sparse_pgd", 1, "pixels", "0000")), "survived": "1010"}],
        "worst_case": [],
        "convergence": [],
        "masking": [],
    }
    results = from_json(json.dumps(v1))
    assert results.rows[0].survived == (True, False, True, False)
    assert results.models["g"].details == {"loss": "pal"} and results.models["g"].certified[0].square_side == 7
    assert results.worst_case == worst_case_cells(results.rows, results.attacks)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"version": 99}', "results version 99; this voldefense reads versions 1 and"),
        ("{not json", "is not valid JSON"),
        ('{"version": 2, "models": {}}', "is damaged (KeyError"),
    ],
)
def test_unreadable_results_are_one_line(text, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")) as info:
        from_json(text, "run/results.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("run/results.json")
