"""Pass 1 of loading a config: structure, types and ranges against the dataclasses of `voldefense.config.schema`
(unknown keys, wrong types, non-finite or out-of-range values), each mistake one `ConfigError` naming the key path,
the bad value and what is allowed; and the schema described key by key for the docs."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import types
import typing
from typing import Any, Literal, Union

import yaml

from voldefense.config.schema import Config
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def invalid_value(path: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{path or 'config'}: invalid value {_short(value)}; allowed: {allowed}")


# -- pass 1: structure, types, ranges ----------------------------------------------------------------------


def _describe(tp: Any, meta: dict[str, Any]) -> str:
    """A human description of what a type (with its limits) accepts, for error messages."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return ", or ".join(_describe(a, meta) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"a list of {_describe(item, meta)}"
    if origin is dict:
        return "a mapping of option names to values"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    text = names.get(tp, getattr(tp, "__name__", str(tp)))
    if tp in (int, float):
        bounds = []
        if "min" in meta:
            bounds.append(f">= {meta['min']}")
        if "gt" in meta:
            bounds.append(f"> {meta['gt']}")
        if "max" in meta:
            bounds.append(f"<= {meta['max']}")
        if bounds:
            text += " " + " and ".join(bounds)
    return text


def _non_finite(path: str, value: float, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: {value!r} is not a finite number (NaN and infinity are refused); allowed: {allowed}")


def _refuse_non_finite(value: Any, path: str) -> None:
    """Raise if a float anywhere inside `value` (plugin options, nested lists and mappings) is NaN or infinite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _non_finite(path, value, "a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _refuse_non_finite(item, f"{path}[{i}]")


def _check_range(value: float, meta: dict[str, Any]) -> bool:
    if "min" in meta and value < meta["min"]:
        return False
    if "gt" in meta and value <= meta["gt"]:
        return False
    return not ("max" in meta and value > meta["max"])


def _coerce(value: Any, tp: Any, path: str, meta: dict[str, Any]) -> Any:
    """Return `value` converted to `tp`, or raise a ConfigError naming `path`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        _refuse_non_finite(value, path)
        return value
    if tp is type(None):
        if value is None:
            return None
        raise invalid_value(path, value, "null")
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(tp):
            return value
        raise invalid_value(path, value, _describe(tp, meta))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        # A mistake inside a list/mapping member is reported from that member (a more precise path).
        for arg in args:
            if _matches_shape(value, arg):
                return _coerce(value, arg, path, meta)
        raise invalid_value(path, value, _describe(tp, meta))
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise invalid_value(path, value, _describe(tp, meta))
        if len(value) < meta.get("min_items", 0):
            raise invalid_value(path, value, f"{_describe(tp, meta)} with at least {meta['min_items']} item(s)")
        return [_coerce(v, item, f"{path}[{i}]", meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise invalid_value(path, value, _describe(tp, meta))
        _refuse_non_finite(value, path)
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _parse_section(value, tp, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise invalid_value(path, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool) and _check_range(value, meta):
            return value
        raise invalid_value(path, value, _describe(int, meta))
    if tp is float:
        if isinstance(value, float) and not math.isfinite(value):
            # NaN passes every comparison-based range check, so it is refused by name, before the range.
            raise _non_finite(path, value, _describe(float, meta))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and _check_range(float(value), meta):
            return float(value)
        raise invalid_value(path, value, _describe(float, meta))
    if tp is str:
        if isinstance(value, str) and value:
            return value
        raise invalid_value(path, value, "a non-empty string")
    raise TypeError(f"schema type {tp!r} at {path} is not supported by the validator")  # a bug in schema.py


def _matches_shape(value: Any, tp: Any) -> bool:
    """Whether `value` is the right kind of thing for union member `tp` (limits are checked afterwards)."""
    origin = typing.get_origin(tp)
    if tp is type(None):
        return value is None
    if origin is Literal:
        return isinstance(value, str) and value in typing.get_args(tp)
    if origin is list:
        return isinstance(value, list)
    if origin is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True


def _parse_section(raw: Any, cls: type, path: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise invalid_value(path, raw, _describe(cls, {}))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown key{hint} (allowed keys: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], where, dict(f.metadata))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required key is missing ({f.metadata.get('doc', '')})")
        elif f.default is None and f.metadata.get("plugin"):
            raise ConfigError(f"{where}: required key is missing ({f.metadata.get('doc', '')})")
    return cls(**values)


def parse_config(raw: Any) -> Config:
    """Validate a mapping (parsed YAML) against the schema; returns the typed `Config`."""
    if raw is None:
        raw = {}
    return _parse_section(raw, Config, "")


def describe_schema(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every key of the schema as (path, allowed values, default, description), for docs and `--help` texts."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        meta = dict(f.metadata)
        if dataclasses.is_dataclass(tp):
            out += describe_schema(tp, f"{path}.")
            continue
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if item is not None and dataclasses.is_dataclass(item):
            out.append((path, f"a list of {item.__name__} entries", "[]", meta.get("doc", "")))
            out += describe_schema(item, f"{path}[].")
            continue
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        required = default is None and meta.get("plugin")
        shown = (
            "required"
            if required
            else yaml.safe_dump(default, default_flow_style=True)
            .strip()
            .removesuffix("\n...")
            .removesuffix("...")
            .strip()
        )
        out.append((path, _describe(tp, meta), shown, meta.get("doc", "")))
    return out
