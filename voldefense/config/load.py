"""Load, override and validate a run configuration; every mistake is one `ConfigError` line before any training.

Two passes:

1. `parse_config` checks structure, types and ranges against the dataclasses of `voldefense.config.schema`
   (unknown keys, wrong types, out-of-range values), naming the key path, the bad value and what is allowed.
2. `check_config` checks names and options against the plugin registry (unknown metric/backbone/loss/attack names,
   options a plugin's factory does not accept, options the dataset does not accept) and cross-field rules.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from voldefense.config.checks import check_config, default_registry
from voldefense.config.parse import parse_config
from voldefense.config.schema import Config
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)


# -- overrides ---------------------------------------------------------------------------------------------


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` to the raw mapping; the value is parsed as YAML; list items are addressed by index."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. training.epochs=2")
    key, text = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not parts or any(not p for p in parts):
        raise ConfigError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. training.epochs=2")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({type(err).__name__})") from None
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {where}: list index out of range (the list has {len(node)} items)")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:depth])} is not a mapping")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of sections, not {type(raw).__name__}")
    return raw


def load_config(path: str | Path, overrides: Sequence[str] = (), *, registry: Any = None) -> Config:
    """Read a YAML file, apply ``--set`` overrides, and validate it completely (schema, then plugins); warn
    about budgets attacked only by non-adaptive attacks (`voldefense.config.coverage`)."""
    raw = read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    config = parse_config(raw)
    check_config(config, registry=registry)
    from voldefense.config.coverage import warn_non_adaptive_budgets  # imports this module: import at call time

    warn_non_adaptive_budgets(config, registry if registry is not None else default_registry())
    return config


# -- serialisation -----------------------------------------------------------------------------------------


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_config(config: Config) -> str:
    """The resolved configuration as YAML (every default filled in)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
