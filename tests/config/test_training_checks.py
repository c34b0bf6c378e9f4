"""Per-model optimizer settings and the load-time warning for a summed PAL under SGD."""

from __future__ import annotations

import logging

import pytest

from voldefense.config import parse_config
from voldefense.config.checks import check_config
from voldefense.config.training_checks import optimizer_for, training_warnings
from voldefense.errors import ConfigError


def test_optimizer_g_overrides_only_the_keys_it_sets():
    config = parse_config({"optimizer": {"name": "sgd", "lr": 0.05}, "optimizer_g": {"name": "adam", "lr": 1e-3}})
    f, g = optimizer_for(config, "f"), optimizer_for(config, "g")
    assert (f.name, f.lr) == ("sgd", 0.05)
    assert (g.name, g.lr, g.weight_decay) == ("adam", 1e-3, config.optimizer.weight_decay)
    assert optimizer_for(config, "ablation") == g
    assert optimizer_for(parse_config({}), "g") == parse_config({}).optimizer


def test_optimizer_g_is_validated():
    with pytest.raises(ConfigError, match=r"optimizer_g.lr"):
        parse_config({"optimizer_g": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"optimizer_g.name"):
        parse_config({"optimizer_g": {"name": "rmsprop"}})


def test_summed_pal_under_sgd_is_a_one_line_warning_with_the_factor(caplog):
    raw = {"loss": {"g_options": {"patch_reduction": "sum"}}, "optimizer": {"name": "sgd", "lr": 0.1}}
    (line,) = training_warnings(parse_config(raw))
    assert "4x the stated 0.1 = 0.4" in line and "\n" not in line
    imagenet = {**raw, "data": {"name": "imagefolder", "options": {"root": "x", "image_size": 224}}}
    assert "196x" in training_warnings(parse_config(imagenet))[0]
    with caplog.at_level(logging.WARNING):
        check_config(parse_config(raw))
    assert "patch_reduction 'sum' under SGD" in caplog.text


@pytest.mark.parametrize(
    "raw",
    [
        {},  # mean reduction (the default)
        {"loss": {"g_options": {"patch_reduction": "sum"}}, "optimizer": {"name": "adam", "lr": 1e-3}},
        {"loss": {"g_options": {"patch_reduction": "sum"}}, "optimizer_g": {"name": "adam"}},
        {"loss": {"g_options": {"patch_reduction": "sum"}}, "training": {"models": ["f"]}},
    ],
)
def test_no_warning_where_the_stated_rate_is_the_effective_one(raw):
    assert training_warnings(parse_config(raw)) == []
