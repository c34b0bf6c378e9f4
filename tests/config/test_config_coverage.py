"""The loader warns, in one line per budget, when a budget of a run is attacked only by non-adaptive attacks
(`AttackSpec.adaptive` False), naming the budget, the models and an adaptive attack to add."""

from __future__ import annotations

import logging

import yaml

from voldefense.config import load_config, parse_config
from voldefense.config.coverage import non_adaptive_budgets


def _config(attacks: list[dict], **extra):
    return parse_config({"model": {"backbone": "vgg16"}, "attacks": attacks, **extra})


def test_a_budget_only_random_pixels_attacks_is_named_with_an_attack_to_add(fresh_registry):
    config = _config(
        [{"name": "random_pixels", "sizes": [1, 4]}, {"name": "sparse_pgd", "sizes": [4]}],
    )
    (line,) = non_adaptive_budgets(config, fresh_registry)
    prefix = (
        "attacks: budget 1 pixel is attacked only by non-adaptive attacks (random_pixels) for f, g, so its worst "
        "case is not a search for one; add an adaptive attack such as "
    )
    assert line.startswith(prefix) and line.endswith(" at that size")
    suggested = fresh_registry.get("attack", line[len(prefix) :].split()[0])
    # a white-box attack of the same unit that searches the attacked model itself
    assert suggested.adaptive and suggested.white_box and suggested.size_unit == "pixels"
    assert not suggested.needs_source_model


def test_an_adaptive_attack_on_every_model_silences_it(fresh_registry):
    config = _config([{"name": "random_pixels", "sizes": [1]}, {"name": "pixel_batched", "sizes": [1]}])
    assert non_adaptive_budgets(config, fresh_registry) == []


def test_models_not_covered_by_the_adaptive_attack_are_named(fresh_registry):
    config = _config(
        [
            {"name": "random_pixels", "sizes": [2]},
            {"name": "sparse_pgd", "sizes": [2], "models": ["f"]},
            {"name": "patch_pgd", "sizes": [0.05]},
        ]
    )
    (line,) = non_adaptive_budgets(config, fresh_registry)
    assert "budget 2 pixels" in line and "for g," in line and "f," not in line


def test_load_config_logs_the_warning_once_per_budget(fresh_registry, tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"backbone": "vgg16"}, "attacks": [{"name": "random_pixels", "sizes": [1, 64]}]})
    )
    with caplog.at_level(logging.WARNING, logger="voldefense.config.coverage"):
        load_config(path, registry=fresh_registry)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert "budget 1 pixel " in warnings[0] and "budget 64 pixels " in warnings[1]
