"""Structure, type and range validation of run configs (pass 1), and --set overrides."""

from __future__ import annotations

import pytest

from voldefense.config import Config, apply_override, parse_config
from voldefense.config.load import read_yaml
from voldefense.config.parse import describe_schema
from voldefense.errors import ConfigError


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_empty_config_gives_every_default():
    config = parse_config({})
    assert config == Config()
    assert config.training.models == ["f", "g"]
    assert config.model.depth_kernel == 3


def test_values_are_typed():
    config = parse_config({"optimizer": {"lr": 1}, "volumizer": {"patch": [8, 4]}, "model": {"depth_kernel": "full"}})
    assert config.optimizer.lr == 1.0 and isinstance(config.optimizer.lr, float)
    assert config.volumizer.patch == [8, 4]
    assert config.model.depth_kernel == "full"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"trainig": {}}, "trainig: unknown key; did you mean 'training'?"),
        ({"model": {"depth_kernal": 3}}, "model.depth_kernal: unknown key; did you mean 'depth_kernel'?"),
        ({"attacks": [{"name": "pixel", "size": [1]}]}, "attacks[0].size: unknown key; did you mean 'sizes'?"),
    ],
)
def test_unknown_keys_name_the_path_and_the_allowed_keys(raw, expected):
    message = error_of(raw)
    assert message.startswith(expected)
    assert "allowed keys:" in message


@pytest.mark.parametrize(
    ("raw", "path", "allowed"),
    [
        ({"training": {"epochs": "ten"}}, "training.epochs: invalid value 'ten'", "an integer >= 1"),
        ({"training": {"epochs": True}}, "training.epochs: invalid value True", "an integer >= 1"),
        ({"output": {"overwrite": "yes"}}, "output.overwrite: invalid value 'yes'", "true or false"),
        ({"data": {"options": [1]}}, "data.options: invalid value [1]", "a mapping"),
        ({"attacks": {"name": "pixel"}}, "attacks: invalid value", "a list of"),
        ({"attacks": [{"name": "pixel", "sizes": ["big"]}]}, "attacks[0].sizes[0]: invalid value 'big'", "a number"),
        ({"volumizer": {"order": "up"}}, "volumizer.order: invalid value 'up'", "'ascending' or 'descending'"),
        ({"model": {"depth_kernel": "half"}}, "model.depth_kernel: invalid value 'half'", "an integer >= 1, or 'full'"),
        ({"training": {"models": ["f", "h"]}}, "training.models[1]: invalid value 'h'", "'f' or 'g'"),
        ({"model": {"backbone": ""}}, "model.backbone: invalid value ''", "a non-empty string"),
        ({"data": None, "training": 3}, "training: invalid value 3", "a mapping with keys"),
    ],
)
def test_wrong_types_name_path_value_and_allowed_values(raw, path, allowed):
    message = error_of(raw)
    assert message.startswith(path), message
    assert allowed in message.split("allowed:")[1]


@pytest.mark.parametrize(
    ("raw", "path", "allowed"),
    [
        ({"optimizer": {"lr": 0}}, "optimizer.lr", "a number > 0.0"),
        ({"optimizer": {"momentum": 1.5}}, "optimizer.momentum", "<= 1.0"),
        ({"training": {"batch_size": 0}}, "training.batch_size", "an integer >= 1"),
        ({"model": {"depth_kernel": 0}}, "model.depth_kernel", "an integer >= 1"),
        ({"syllabus": {"start_fraction": 0.0}}, "syllabus.start_fraction", "> 0.0"),
        ({"volumizer": {"patch": [8, 0]}}, "volumizer.patch[1]", "an integer >= 1"),
        ({"training": {"models": []}}, "training.models", "at least 1 item"),
        ({"attacks": [{"name": "pixel", "sizes": [1], "images": 0}]}, "attacks[0].images", ">= 1"),
    ],
)
def test_out_of_range_values_are_refused(raw, path, allowed):
    message = error_of(raw)
    assert message.startswith(f"{path}: invalid value"), message
    assert allowed in message


def test_attack_without_a_name_is_refused():
    assert error_of({"attacks": [{"sizes": [1]}]}).startswith("attacks[0].name: required key is missing")


def test_override_sets_nested_values_parsed_as_yaml():
    raw = {"training": {"epochs": 3}, "attacks": [{"name": "pixel", "sizes": [1]}]}
    apply_override(raw, "training.epochs=2")
    apply_override(raw, "model.depth_kernel=full")
    apply_override(raw, "attacks.0.sizes=[1, 2, 4]")
    apply_override(raw, "data.options.train_size=100")
    config = parse_config(raw)
    assert config.training.epochs == 2
    assert config.model.depth_kernel == "full"
    assert config.attacks[0].sizes == [1.0, 2.0, 4.0]
    assert config.data.options == {"train_size": 100}


def test_override_values_are_validated_like_the_file():
    raw: dict = {}
    apply_override(raw, "training.epochs=-1")
    assert error_of(raw).startswith("training.epochs: invalid value -1")


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [
        ("training.epochs", "expected KEY.PATH=VALUE"),
        ("training..epochs=1", "expected KEY.PATH=VALUE"),
        ("attacks.3.sizes=[1]", "list index out of range"),
        ("training.epochs=[1", "is not valid YAML"),
        ("training.epochs.x=1", "is not a mapping"),
    ],
)
def test_bad_overrides_are_one_line_errors(assignment, fragment):
    raw = {"training": {"epochs": 3}, "attacks": [{"name": "pixel", "sizes": [1]}]}
    with pytest.raises(ConfigError, match=fragment):
        apply_override(raw, assignment)


def test_yaml_files_are_read_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("training: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(evil)
    broken = tmp_path / "broken.yaml"
    broken.write_text("training:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        read_yaml(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        read_yaml(listing)
    with pytest.raises(ConfigError, match="does not exist"):
        read_yaml(tmp_path / "missing.yaml")


def test_docs_describe_every_key():
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "config.md").read_text()
    missing = [path for path, *_ in describe_schema() if f"`{path}`" not in docs]
    assert not missing, f"docs/config.md lacks {missing}"
