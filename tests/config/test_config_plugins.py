"""Pass 2 of validation: plugin names and options, dataset options and cross-field rules, all before training."""

from __future__ import annotations

from pathlib import Path

import pytest

from voldefense.config import check_config, load_config, parse_config, read_yaml
from voldefense.errors import ConfigError

BASE = {
    "model": {"backbone": "resnet50"},
    "attacks": [{"name": "random_pixels", "sizes": [1, 2]}, {"name": "patch_pgd", "sizes": [0.05]}],
}


def error_of(raw, registry) -> str:
    config = parse_config(raw)
    with pytest.raises(ConfigError) as info:
        check_config(config, registry=registry)
    message = str(info.value)
    assert "\n" not in message
    return message


def merged(**sections):
    raw = {key: (dict(value) if isinstance(value, dict) else list(value)) for key, value in BASE.items()}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def test_the_base_config_is_valid(fresh_registry):
    check_config(parse_config(merged()), registry=fresh_registry)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"volumizer": {"metric": "mii"}}, "volumizer.metric: unknown metric 'mii'; did you mean 'mi'?"),
        ({"syllabus": {"metric": "entropie"}}, "syllabus.metric: unknown metric 'entropie'; did you mean 'entropy'?"),
        ({"model": {"backbone": "resnet5"}}, "model.backbone: unknown backbone 'resnet5'; did you mean 'resnet50'?"),
        ({"loss": {"g": "pall"}}, "loss.g: unknown loss 'pall'; did you mean 'pal'?"),
        ({"attacks": [{"name": "pixle", "sizes": [1]}]}, "attacks[0].name: unknown attack 'pixle'; did you mean"),
    ],
)
def test_unknown_plugin_names_list_the_available_ones(fresh_registry, sections, expected):
    message = error_of(merged(**sections), fresh_registry)
    assert message.startswith(expected), message
    assert "(available:" in message


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"volumizer": {"metric_options": {"binz": 8}}}, "volumizer.metric_options.binz: metric 'mi' does not accept"),
        ({"model": {"options": {"dropout": 0.5}}}, "model.options.dropout: backbone 'resnet50' does not accept"),
        ({"loss": {"g_options": {"smoothing": 0.1}}}, "loss.g_options.smoothing: loss 'pal' does not accept"),
        (
            {"attacks": [{"name": "random_pixels", "sizes": [1], "options": {"copys": 3}}]},
            "attacks[0].options.copys: attack 'random_pixels' does not accept this option; did you mean 'copies'?",
        ),
    ],
)
def test_unknown_plugin_options_name_the_accepted_ones(fresh_registry, sections, expected):
    message = error_of(merged(**sections), fresh_registry)
    assert message.startswith(expected), message
    assert "(accepted:" in message


def test_dataset_options_are_checked(fresh_registry):
    message = error_of(merged(data={"name": "synthetic", "options": {"trainsize": 10}}), fresh_registry)
    assert message.startswith("data.options.trainsize: dataset 'synthetic' does not accept this option"), message
    message = error_of(merged(data={"name": "cifar11"}), fresh_registry)
    assert message.startswith("data.name: unknown dataset 'cifar11'"), message


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"attacks": [{"name": "random_pixels", "sizes": [1.5]}]}, "attacks[0].sizes[0]: invalid value 1.5"),
        ({"attacks": [{"name": "patch_pgd", "sizes": [2]}]}, "attacks[0].sizes[0]: invalid value 2"),
        ({"loss": {"f": "pal"}}, "loss.f: 'pal' is a patch loss"),
        (
            {"attacks": [{"name": "random_pixels", "sizes": [1]}, {"name": "random_pixels", "sizes": [2]}]},
            "attacks[1].label: 'random_pixels' is used by two attacks",
        ),
        (
            {"training": {"models": ["g"]}, "attacks": [{"name": "random_pixels", "sizes": [1], "models": ["f"]}]},
            "attacks[0].models[0]: invalid value 'f'",
        ),
        (
            {
                "training": {"models": ["g"]},
                "attacks": [{"name": "patch", "sizes": [0.04], "options": {"source": "transfer"}}],
            },
            "attacks[0].options.source: invalid value 'transfer'",
        ),
        (
            {"attacks": [{"name": "patch", "sizes": [0.04], "options": {"source_model": "h"}}]},
            "attacks[0].options.source_model: invalid value 'h'; allowed: the name of a model of this run (f, g)",
        ),
    ],
)
def test_cross_field_rules(fresh_registry, sections, expected):
    message = error_of(merged(**sections), fresh_registry)
    assert message.startswith(expected), message


def test_load_config_reads_overrides_and_validates_everything(tmp_path, fresh_registry):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: resnet50\ntraining:\n  epochs: 3\n")
    config = load_config(path, ["training.epochs=1", "model.width=0.25"], registry=fresh_registry)
    assert config.training.epochs == 1 and config.model.width == 0.25
    with pytest.raises(ConfigError, match="^volumizer.metric: unknown metric"):
        load_config(path, ["volumizer.metric=nope"], registry=fresh_registry)


CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml")))
def test_shipped_configs_are_valid(path, fresh_registry, tmp_path, monkeypatch):
    overrides = []
    if read_yaml(CONFIGS / path).get("model", {}).get("weights"):
        # Examples of your own model name a weights file the user saves first (docs/your_model.md).
        (tmp_path / "weights.pt").write_bytes(b"")
        overrides.append(f"model.weights={tmp_path / 'weights.pt'}")
    monkeypatch.chdir(CONFIGS.parent)  # examples' model.factory is imported from the repository root
    config = load_config(CONFIGS / path, overrides, registry=fresh_registry)
    assert config.attacks, "a shipped config attacks something"
    if path.startswith(("paper/", "reproduce/")):
        assert config.volumizer.patch == 16  # the paper's patch size


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"val_attack": "random_pixel"}, "training.val_attack: unknown attack 'random_pixel'; did you mean"),
        (
            {"val_attack": "patch_pgd"},
            "training.val_attack: invalid value 'patch_pgd'; allowed: an attack whose sizes are pixels",
        ),
        (
            {"val_attack_options": {"copiez": 3}},
            "training.val_attack_options.copiez: attack 'random_pixels' does not accept",
        ),
    ],
)
def test_the_validation_attack_is_checked_at_load(fresh_registry, training, expected):
    message = error_of(merged(training=training), fresh_registry)
    assert message.startswith(expected), message


def test_any_pixel_attack_can_validate_each_epoch(fresh_registry):
    from voldefense.run.resolve import resolve

    config = parse_config(merged(training={"val_attack": "sparse_pgd", "val_attack_options": {"steps": 2}}))
    check_config(config, registry=fresh_registry)
    assert resolve(config, fresh_registry).validation_attack.name == "sparse_pgd"
    assert resolve(parse_config(merged()), fresh_registry).validation_attack.name == "random_pixels"
