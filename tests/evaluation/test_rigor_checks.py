"""Evaluation-rigor checks: budget convergence and gradient masking over constructed outcomes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from results_fixtures import row

from voldefense.errors import ConfigError
from voldefense.evaluation import AttackOutcome
from voldefense.evaluation.checks import (
    ConvergenceCheck,
    budget_convergence,
    double_budget,
    gradient_masking,
    masking_checks,
    not_doubled_reason,
    robust_accuracy_of,
    strongest_attack,
)
from voldefense.registry import Registry
from voldefense.specs import AttackSpec, BudgetOption


def outcome(robust: str, *, size: float = 0.1, copies: int = 1, clean: str | None = None) -> AttackOutcome:
    """An outcome whose images are robust where `robust` has '1' (copy 0 fails elsewhere)."""
    b = len(robust)
    adv = torch.ones(copies, b, dtype=torch.bool)
    adv[0] = torch.tensor([c == "1" for c in robust])
    clean_correct = torch.tensor([c == "1" for c in (clean or "1" * b)])
    return AttackOutcome(
        clean_correct=clean_correct,
        adversarial_correct=adv,
        queries=torch.zeros(b),
        seconds=0.0,
        labels=torch.zeros(b, dtype=torch.long),
        size=size,
    )


@pytest.fixture(scope="module")
def registry():
    return Registry(load_entry_points=False)


def test_robust_accuracy_counts_clean_errors_and_every_copy():
    assert robust_accuracy_of(outcome("1100")) == 0.5
    assert robust_accuracy_of(outcome("1111", clean="0111")) == 0.75  # wrong when clean is not robust
    assert robust_accuracy_of(outcome("1110", copies=5)) == 0.75  # one failing copy breaks the image
    assert robust_accuracy_of(row("g", "a", 1, "pixels", "1000")) == 0.25
    with pytest.raises(TypeError):
        robust_accuracy_of({"model": "g"})


def test_convergence_holds_within_tolerance_and_fails_beyond():
    base = outcome("1" * 45 + "0" * 55)  # 45%
    held = budget_convergence(base, outcome("1" * 44 + "0" * 56), 0.02, attack="patch_pgd")
    assert held.held is True and held.applicable
    assert held.drop == pytest.approx(0.01)
    failed = budget_convergence(base, outcome("1" * 40 + "0" * 60), 0.02, attack="patch_pgd")
    assert failed.held is False and failed.drop == pytest.approx(0.05)
    assert "FAILED" in failed.message and "patch_pgd" in failed.message
    # more budget that *raises* accuracy (a noisy attack) is not a failure of convergence
    assert budget_convergence(base, outcome("1" * 50 + "0" * 50)).held is True
    json.dumps(failed.as_dict())


def test_convergence_rejects_mismatched_images_and_bad_tolerance():
    with pytest.raises(ConfigError, match="same images"):
        budget_convergence(outcome("10"), outcome("100"))
    with pytest.raises(ConfigError, match="tolerance"):
        budget_convergence(outcome("10"), outcome("10"), tolerance=1.5)


def test_not_applicable_is_reported_and_serialisable():
    check = ConvergenceCheck.not_applicable("pixel_exhaustive", "exact")
    assert check.held is None and not check.applicable
    d = json.loads(json.dumps(check.as_dict()))
    assert d["base_acc"] is None and "not applicable" in d["message"]


def test_double_budget_knows_the_builtins_and_reads_defaults(registry):
    assert double_budget("patch_pgd", {"steps": 7}, registry=registry) == {"steps": 14}
    assert double_budget("patch_pgd", {}, registry=registry) == {"steps": 80}  # default 40
    assert double_budget("patch_pgd", {"location": "search"}, registry=registry) == {
        "location": "search",
        "steps": 80,
        "candidates": 8,
    }
    assert double_budget("pixel_batched", {}, registry=registry)["max_queries"] == 80_000
    assert double_budget("sparse_pgd", {"restarts": 2}, registry=registry) == {"restarts": 2, "steps": 100}
    assert double_budget("patch_rank", {}, registry=registry) == {"steps": 80}
    assert double_budget("pixel", {}, registry=registry) == {"max_iter": 20}
    assert double_budget("patch", {"iterations": 10}, registry=registry) == {"iterations": 20}
    # exhaustive / fixed protocols / unknown attacks: not applicable
    assert double_budget("pixel_exhaustive", {}, registry=registry) is None
    assert double_budget("random_pixels", {}, registry=registry) is None
    assert double_budget("someone_elses_attack", {"steps": 3}, registry=registry) is None
    # the doubled options build a working attack of the same plugin
    registry.get("attack", "patch_pgd").build(**double_budget("patch_pgd", {}, registry=registry))


def _attack_with(steps: int = 10, mode: str = "fast", rounds: int = 3) -> object:
    return None


def test_double_budget_reads_what_any_spec_declares():
    """A third-party attack gets the convergence check from its declared `budget_options` (no name table); a
    conditional option counts when its condition holds, read from the factory's defaults when not given."""
    spec = AttackSpec(
        name="someone_elses",
        factory=_attack_with,
        description="a third-party attack",
        budget_options=("steps", BudgetOption("rounds", when=("mode", "thorough"))),
    )
    assert double_budget(spec, {}) == {"steps": 20}
    assert double_budget(spec, {"steps": 4, "mode": "thorough"}) == {"steps": 8, "mode": "thorough", "rounds": 6}
    thorough_default = AttackSpec(
        name="thorough_default",
        factory=lambda *, steps=5, mode="thorough", rounds=2: None,
        description="its default mode is the one whose rounds count",
        budget_options=("steps", BudgetOption("rounds", when=("mode", "thorough"))),
    )
    assert double_budget(thorough_default, {}) == {"steps": 10, "rounds": 4}
    assert double_budget(spec, {"steps": "many"}) is None  # not an integer: nothing to double honestly


def test_not_doubled_reason_comes_from_the_declared_fields(registry):
    assert "exact" in not_doubled_reason("pixel_exhaustive", registry=registry)
    assert "fixed protocol" in not_doubled_reason("random_pixels", registry=registry)
    assert "not a registered attack" in not_doubled_reason("nope", registry=registry)
    bare = AttackSpec(name="bare", factory=_attack_with, description="declares nothing")
    assert double_budget(bare, {}) is None
    assert not_doubled_reason(bare) == "bare declares no budget option to double"


def test_strongest_attack_is_the_lowest_robust_accuracy():
    results = {"a": outcome("1110"), "b": outcome("1000"), "c": outcome("1000"), "d": outcome("1111")}
    assert strongest_attack(results) == "b"  # first of the tie
    assert strongest_attack({}) is None


def test_masking_flags_a_black_box_win_beyond_tolerance():
    n = 50
    outcomes = {
        "sparse_pgd": outcome("1" * 30 + "0" * 20),  # 60%
        "patch_pgd": outcome("1" * 35 + "0" * 15),  # 70%
        "pixel_exhaustive": outcome("1" * 20 + "0" * 30),  # 40%: black box wins by 20 points
    }
    kind = {"sparse_pgd": True, "patch_pgd": True, "pixel_exhaustive": False}
    check = gradient_masking(outcomes, kind, tolerance=0.02)
    assert check.flagged and check.applicable
    assert check.best_black_box == "pixel_exhaustive" and check.best_white_box == "sparse_pgd"
    assert check.gap == pytest.approx(0.2)
    assert check.black_box_only == 10  # images 20..29
    assert "FLAGGED" in check.message
    json.dumps(check.as_dict())
    assert len(outcomes["sparse_pgd"].clean_correct) == n


def test_masking_not_flagged_within_tolerance_or_when_white_box_wins():
    kind = {"w": True, "b": False}
    close = gradient_masking({"w": outcome("1" * 51 + "0" * 49), "b": outcome("1" * 50 + "0" * 50)}, kind)
    assert not close.flagged and close.gap == pytest.approx(0.01)
    white_wins = gradient_masking({"w": outcome("1000"), "b": outcome("1110")}, kind)
    assert not white_wins.flagged and white_wins.gap < 0 and white_wins.black_box_only == 0


def test_masking_needs_both_kinds_and_one_budget():
    only_white = gradient_masking({"w": outcome("10")}, {"w": True})
    assert not only_white.applicable and not only_white.flagged and "not applicable" in only_white.message
    with pytest.raises(ConfigError, match="one budget"):
        gradient_masking({"w": outcome("10", size=0.1), "b": outcome("10", size=0.2)}, {"w": True, "b": False})
    with pytest.raises(ConfigError, match="one budget"):
        gradient_masking(
            {"w": outcome("10", size=1), "b": outcome("10", size=1)},
            {"w": True, "b": False},
            size_unit={"w": "pixels", "b": "area"},
        )
    with pytest.raises(ConfigError, match="white_box"):
        gradient_masking({"w": outcome("10")}, {})


def test_masking_checks_group_runner_rows_per_model_and_budget():
    rows = [
        row("g", "sparse_pgd", 1, "pixels", "1110"),
        row("g", "pixel_exhaustive", 1, "pixels", "1000"),
        row("g", "patch_pgd", 0.1, "area", "1100"),
        row("f", "sparse_pgd", 1, "pixels", "1000"),
        row("f", "pixel_exhaustive", 1, "pixels", "1000"),
    ]
    kind = {"sparse_pgd": True, "patch_pgd": True, "pixel_exhaustive": False}
    checks = {(c.model, c.size_unit, c.size): c for c in masking_checks(rows, kind)}
    assert checks[("g", "pixels", 1.0)].flagged  # 25% vs 75%
    assert not checks[("f", "pixels", 1.0)].flagged  # tie
    assert not checks[("g", "area", 0.1)].applicable  # no black-box patch attack
    assert math.isnan(checks[("g", "area", 0.1)].best_black_box_acc)


def test_masking_compares_attacks_on_the_images_they_share():
    # On the 4 shared images the white-box attack is as strong as the black-box one; the black-box attack's
    # extra images (all broken) must not raise the flag by themselves.
    rows = {
        "sparse_pgd": row("g", "sparse_pgd", 1.0, "pixels", "1010"),
        "random_pixels": row("g", "random_pixels", 1.0, "pixels", "10100000"),
    }
    check = gradient_masking(rows, {"sparse_pgd": True, "random_pixels": False})
    assert not check.flagged
    assert check.black_box_only == 0


def test_an_injected_registry_is_never_bypassed(registry, monkeypatch):
    def unreachable(strict):
        raise AssertionError("the process-wide registry was used although one was injected")

    monkeypatch.setattr("voldefense.registry._cached_registry", unreachable)
    assert double_budget("patch_pgd", {"steps": 3}, registry=registry) == {"steps": 6}
    assert not_doubled_reason("random_pixels", registry=registry) == "a fixed protocol, not an optimisation"
    assert double_budget(registry.get("attack", "sparse_pgd"), {"steps": 2}) == {"steps": 4}
