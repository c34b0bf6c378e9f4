"""Plugin specs validate their declared fields on construction, so a plugin declaring nonsense fails where it
is defined; the built-in attacks declare the behaviour the core relies on."""

from __future__ import annotations

import pytest

from voldefense.errors import PluginError
from voldefense.registry import Registry
from voldefense.specs import AttackSpec, BudgetOption


def _factory(*, steps: int = 3, location: str = "random", candidates: int = 2) -> None:
    return None


def _attack(**fields) -> AttackSpec:
    return AttackSpec(name="probe", factory=_factory, description="a probe attack", **fields)


def test_declared_fields_default_to_an_adaptive_inexact_attack():
    spec = _attack()
    assert (spec.budget_options, spec.exact, spec.adaptive, spec.needs_source_model, spec.max_image_pixels) == (
        (),
        False,
        True,
        False,
        None,
    )
    assert spec.budget_keys() == () and spec.image_pixel_limit() is None


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"budget_options": "steps"}, "budget_options must be a tuple"),
        ({"budget_options": ("steps", 3)}, "budget_options entries"),
        ({"budget_options": ("not an option",)}, "budget_options entries"),
        ({"budget_options": ("steps", BudgetOption("steps"))}, "names an option twice"),
        ({"budget_options": ("steps",), "exact": True}, "no budget to double"),
        ({"budget_options": ("steps",), "adaptive": False}, "no budget to double"),
        ({"exact": 1}, "exact must be True or False"),
        ({"adaptive": "no"}, "adaptive must be True or False"),
        ({"needs_source_model": None}, "needs_source_model must be True or False"),
        ({"max_image_pixels": 0}, "max_image_pixels must be a positive integer"),
        ({"max_image_pixels": 10.5}, "max_image_pixels must be a positive integer"),
        ({"max_image_pixels": True}, "max_image_pixels must be a positive integer"),
    ],
)
def test_bad_declarations_fail_where_the_plugin_is_defined(fields, complaint):
    with pytest.raises(PluginError, match=complaint) as info:
        _attack(**fields)
    assert "'probe'" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("when", [("location",), "location=search", (3, "search"), ("no such", 1)])
def test_budget_option_condition_is_an_option_value_pair(when):
    with pytest.raises(PluginError, match="when must be an"):
        BudgetOption("candidates", when=when)


def test_conditional_budget_option_follows_the_configured_or_default_value():
    spec = _attack(budget_options=("steps", BudgetOption("candidates", when=("location", "search"))))
    assert spec.budget_keys({}) == ("steps",)  # default location is random: candidates are unused
    assert spec.budget_keys({"location": "search"}) == ("steps", "candidates")


def test_image_limit_can_be_raised_by_the_max_pixels_option():
    spec = _attack(max_image_pixels=1024)
    assert spec.image_pixel_limit({}) == 1024
    assert spec.image_pixel_limit({"max_pixels": 4096}) == 4096


def test_builtin_attacks_declare_their_behaviour():
    registry = Registry(load_entry_points=False)
    attacks = {name: registry.get("attack", name) for name in registry.names("attack")}
    assert attacks["pixel_exhaustive"].exact and not attacks["pixel_exhaustive"].budget_options
    assert attacks["pixel_exhaustive"].max_image_pixels == 32 * 32
    assert not attacks["random_pixels"].adaptive
    assert attacks["patch"].needs_source_model
    # every other attack searches, and so has a budget the convergence check can double
    for name, spec in attacks.items():
        if name not in ("pixel_exhaustive", "random_pixels"):
            assert spec.budget_options and spec.adaptive and not spec.exact, name
    assert attacks["patch_pgd"].budget_keys({"location": "search"}) == ("steps", "candidates")
    assert attacks["patch_pgd"].budget_keys({}) == ("steps",)


def test_pixel_exhaustive_declared_limit_is_the_attacks_own_default():
    """The spec declares the limit without importing torch; it must agree with the attack's `max_pixels`."""
    from voldefense.attacks.pixel_exhaustive import CIFAR_PIXELS

    spec = Registry(load_entry_points=False).get("attack", "pixel_exhaustive")
    assert spec.max_image_pixels == CIFAR_PIXELS == spec.option_defaults()["max_pixels"]


def test_metric_surrogate_must_be_callable_and_builds_with_the_metric_options():
    from voldefense.specs import MetricSpec

    with pytest.raises(PluginError, match="surrogate of plugin 'probe' is not callable"):
        MetricSpec(name="probe", factory=_factory, description="a probe metric", surrogate="soft")
    with pytest.raises(PluginError, match="distance must be True or False"):
        MetricSpec(name="probe", factory=_factory, description="a probe metric", distance="yes")
    plain = MetricSpec(name="probe", factory=_factory, description="a probe metric")
    assert plain.build_surrogate(steps=2) is None
    soft = MetricSpec(name="probe", factory=_factory, description="m", surrogate=lambda *, bins=4: ("soft", bins))
    assert soft.build_surrogate(bins=8) == ("soft", 8)
    from voldefense.errors import ConfigError

    with pytest.raises(ConfigError, match="surrogate of metric 'probe' does not accept option"):
        soft.build_surrogate(binz=8)
