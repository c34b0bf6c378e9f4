"""Config sections for the comparison: ablations of g, baseline defenses, evaluation checks; shipped compare
configs load against a (fake) npz dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from voldefense.config import check_config, load_config, model_names, parse_config
from voldefense.errors import ConfigError

CONFIGS = Path(__file__).parents[2] / "configs"


def check(raw, registry):
    config = parse_config(raw)
    check_config(config, registry=registry)
    return config


def error_of(raw, registry) -> str:
    with pytest.raises(ConfigError) as info:
        check(raw, registry)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_model_names_are_f_g_ablations_then_defenses(fresh_registry):
    config = check(
        {
            "ablations": ["no_pal", "identity_order"],
            "defenses": [
                {"name": "median_filter"},
                {"name": "median_filter", "label": "median5", "options": {"window": 5}},
            ],
            "attacks": [{"name": "random_pixels", "sizes": [1], "models": ["g_no_pal", "median5"]}],
        },
        fresh_registry,
    )
    assert model_names(config) == ["f", "g", "g_no_pal", "g_identity_order", "median_filter", "median5"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"ablations": ["no_pal", "no_pal"]}, "ablations[1]: 'no_pal' is listed twice"),
        ({"ablations": ["shuffle"]}, "ablations[0]: invalid value 'shuffle'; allowed: 'identity_order'"),
        (
            {"ablations": ["identity_order"], "volumizer": {"ranking": "identity"}},
            "ablations[0]: 'identity_order' would equal g",
        ),
        (
            {"ablations": ["random_order"], "volumizer": {"ranking": "random"}},
            "ablations[0]: 'random_order' would equal g",
        ),
        ({"ablations": ["no_pal"], "loss": {"g": "cross_entropy"}}, "ablations[0]: 'no_pal' would equal g (loss.g"),
        (
            {"ablations": ["no_curriculum"], "syllabus": {"enabled": False}},
            "ablations[0]: 'no_curriculum' would equal g",
        ),
        (
            {"ablations": ["no_curriculum"], "syllabus": {"apply_to": ["f"]}},
            "ablations[0]: 'no_curriculum' would equal g",
        ),
        ({"ablations": ["depth_kernel_3"]}, "ablations[0]: 'depth_kernel_3' would equal g (model.depth_kernel"),
        (
            {"ablations": ["depth_kernel_full"], "model": {"depth_kernel": "full"}},
            "ablations[0]: 'depth_kernel_full' would equal g",
        ),
        (
            {"defenses": [{"name": "median"}]},
            "defenses[0].name: unknown defense 'median'; did you mean 'median_filter'?",
        ),
        ({"defenses": [{"options": {}}]}, "defenses[0].name: required key is missing"),
        (
            {"defenses": [{"name": "median_filter", "options": {"windows": 3}}]},
            "defenses[0].options.windows: defense 'median_filter' does not accept this option; did you mean 'window'?",
        ),
        ({"defenses": [{"name": "median_filter", "options": {"window": 0}}]}, "defenses[0].options: "),
        (
            {"defenses": [{"name": "derandomized_smoothing", "options": {"ablation_type": "diagonal"}}]},
            "defenses[0].options: ",
        ),
        (
            {"defenses": [{"name": "median_filter"}, {"name": "median_filter"}]},
            "defenses[1].label: 'median_filter' is already the name of another model",
        ),
        ({"defenses": [{"name": "median_filter", "label": "g"}]}, "defenses[0].label: 'g' is already the name"),
        ({"defenses": [{"name": "median_filter", "label": "a/b"}]}, "defenses[0].label: invalid value 'a/b'"),
        (
            {"attacks": [{"name": "random_pixels", "sizes": [1], "models": ["median_filter"]}]},
            "attacks[0].models[0]: invalid value 'median_filter'; allowed: a model of this run (f, g)",
        ),
        ({"evaluation": {"certify_areas": [0.0]}}, "evaluation.certify_areas[0]: invalid value 0.0"),
        ({"evaluation": {"convergence_tolerance": 1.5}}, "evaluation.convergence_tolerance: invalid value 1.5"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(fresh_registry, raw, expected):
    assert error_of(raw, fresh_registry).startswith(expected)


def test_ablations_alone_need_a_valid_g_loss_and_metric(fresh_registry):
    raw = {"training": {"models": ["f"]}, "ablations": ["no_curriculum"], "volumizer": {"metric": "nope"}}
    assert error_of(raw, fresh_registry).startswith("volumizer.metric: unknown metric 'nope'")


@pytest.mark.parametrize("name", ["compare_cifar10.yaml", "compare_cifar10_cpu.yaml"])
def test_compare_configs_load_and_take_the_data_path_as_a_setting(name, fake_cifar, fresh_registry):
    path = f"data.options.path={fake_cifar}/{{split}}.npz"
    config = load_config(CONFIGS / name, [path], registry=fresh_registry)
    assert config.data.name == "npz" and "{split}" in config.data.options["path"]
    assert {"depth_kernel_3", "no_pal", "no_curriculum"} <= set(config.ablations)
    assert {d.name for d in config.defenses} == {
        "median_filter",
        "derandomized_smoothing",
        "adversarial_training",
        "local_gradient_smoothing",
        "digital_watermarking",
        "patch_cleanser",
    }
    assert config.training.models == ["f", "g"] and config.evaluation.convergence_check
    from voldefense.run.data import load_data
    from voldefense.run.resolve import check_against_data, resolve

    data = load_data(config)  # the fake files are read through the config's own path setting
    assert data.image_shape == (3, 32, 32) and len(data.train) == 40
    # every PatchCleanser mask set certifies its patch area
    check_against_data(resolve(config, fresh_registry), data.image_shape)


def test_the_cpu_config_points_at_the_shared_cifar_arrays(fresh_registry):
    # The default path is relative to the repository root of a checkout next to `shared/` (docs/runner.md).
    config = load_config(CONFIGS / "compare_cifar10_cpu.yaml", registry=fresh_registry)
    assert config.data.options["path"] == "../shared/data/cifar10/{split}.npz"


def test_names_from_a_third_party_plugin_validate_in_every_section(fresh_registry, monkeypatch):
    """Issue 6: the four contrib plugin kinds are accepted where a run names them (metric, backbone, loss,
    attack), and their options are checked like the built-ins'."""
    src = Path(__file__).parents[2] / "plugins_contrib" / "voldefense-extras" / "src"
    monkeypatch.syspath_prepend(str(src))
    plugin = pytest.importorskip("voldefense_extras.plugin")
    fresh_registry.register(plugin, origin="voldefense-extras")
    raw = {
        "volumizer": {"metric": "ssim"},
        "syllabus": {"metric": "ssim"},
        "model": {"backbone": "wide_resnet"},
        "loss": {"g": "pal_weighted"},
        "ablations": ["no_pal"],
        "attacks": [{"name": "sparse_rs", "sizes": [1], "models": ["g", "g_no_pal"]}],
    }
    config = check(raw, fresh_registry)
    assert config.attacks[0].name == "sparse_rs" and config.loss.g == "pal_weighted"
    bad = {**raw, "attacks": [{"name": "sparse_rs", "sizes": [1], "options": {"bogus": 1}}]}
    assert error_of(bad, fresh_registry).startswith("attacks[0].options.bogus: attack 'sparse_rs' does not accept")
