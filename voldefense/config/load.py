"""Load, override and validate a run configuration; every mistake is one `ConfigError` line before any training.

Two passes:

1. `parse_config` checks structure, types and ranges against the dataclasses of `voldefense.config.schema`
   (unknown keys, wrong types, out-of-range values), naming the key path, the bad value and what is allowed.
2. `check_config` checks names and options against the plugin registry (unknown metric/backbone/loss/attack names,
   options a plugin's factory does not accept, options the dataset does not accept) and cross-field rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import math
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from voldefense.config.schema import Config
from voldefense.errors import ConfigError, UnknownPluginError

logger = logging.getLogger(__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(path: str, value: Any, allowed: str) -> ConfigError:
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
        raise _fail(path, value, "null")
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(tp):
            return value
        raise _fail(path, value, _describe(tp, meta))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        # A mistake inside a list/mapping member is reported from that member (a more precise path).
        for arg in args:
            if _matches_shape(value, arg):
                return _coerce(value, arg, path, meta)
        raise _fail(path, value, _describe(tp, meta))
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise _fail(path, value, _describe(tp, meta))
        if len(value) < meta.get("min_items", 0):
            raise _fail(path, value, f"{_describe(tp, meta)} with at least {meta['min_items']} item(s)")
        return [_coerce(v, item, f"{path}[{i}]", meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _fail(path, value, _describe(tp, meta))
        _refuse_non_finite(value, path)
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _parse_section(value, tp, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(path, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool) and _check_range(value, meta):
            return value
        raise _fail(path, value, _describe(int, meta))
    if tp is float:
        if isinstance(value, float) and not math.isfinite(value):
            # NaN passes every comparison-based range check, so it is refused by name, before the range.
            raise _non_finite(path, value, _describe(float, meta))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and _check_range(float(value), meta):
            return float(value)
        raise _fail(path, value, _describe(float, meta))
    if tp is str:
        if isinstance(value, str) and value:
            return value
        raise _fail(path, value, "a non-empty string")
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
        raise _fail(path, raw, _describe(cls, {}))
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

    warn_non_adaptive_budgets(config, registry if registry is not None else _default_registry())
    return config


# -- pass 2: plugins, options and cross-field rules --------------------------------------------------------


def _accepted(factories: Iterable[Any], fixed: Iterable[str] = ()) -> tuple[set[str], bool]:
    """Keyword names the callables accept (minus `fixed`) and whether any takes ``**kwargs``."""
    names: set[str] = set()
    var_kw = False
    for factory in factories:
        if factory is None:
            continue
        try:
            params = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):
            var_kw = True
            continue
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.add(p.name)
    return names - set(fixed), var_kw


def _check_options(
    path: str, options: dict[str, Any], factories: Iterable[Any], what: str, fixed: Iterable[str] = ()
) -> None:
    accepted, var_kw = _accepted(list(factories), fixed)
    if var_kw:
        return
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{path}.{key}: {what} does not accept this option{hint} "
                f"(accepted: {', '.join(sorted(accepted)) or 'none'})"
            )


def _spec(registry: Any, kind: str, name: str, path: str) -> Any:
    try:
        return registry.get(kind, name)
    except UnknownPluginError as err:
        hint = f"; did you mean {err.close_matches[0]!r}?" if err.close_matches else ""
        listing = ", ".join(err.available) or "none registered"
        raise ConfigError(f"{path}: unknown {kind} {name!r}{hint} (available: {listing})") from None


def _check_dataset(config: Config) -> None:
    from voldefense.data import dataset_info, dataset_options, list_datasets

    names = list_datasets()
    if config.data.name not in names:
        close = difflib.get_close_matches(config.data.name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"data.name: unknown dataset {config.data.name!r}{hint} (available: {', '.join(names)})")
    accepted = set(dataset_options(config.data.name))
    missing = sorted(set(dataset_info(config.data.name).required) - set(config.data.options))
    if missing:
        raise ConfigError(
            f"data.options.{missing[0]}: dataset {config.data.name!r} needs this option (see docs/datasets.md)"
        )
    for key in config.data.options:
        if key == "split":
            raise ConfigError("data.options.split: the runner chooses the split; remove this option")
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"data.options.{key}: dataset {config.data.name!r} does not accept this option{hint} "
                f"(accepted: {', '.join(sorted(accepted)) or 'none'})"
            )


def _default_registry() -> Any:
    from voldefense.registry import get_registry

    return get_registry()


def check_config(config: Config, *, registry: Any = None) -> None:
    """Check plugin names and options, dataset options and cross-field rules; raises `ConfigError`."""
    if registry is None:
        registry = _default_registry()
    _check_dataset(config)

    vol, syl = config.volumizer, config.syllabus
    if isinstance(vol.patch, list) and len(vol.patch) != 2:
        raise _fail("volumizer.patch", vol.patch, "an integer >= 1, or a list [height, width] of two integers")
    if vol.ranking == "metric" or "g" in config.training.models or config.ablations:
        spec = _spec(registry, "metric", vol.metric, "volumizer.metric")
        _check_options("volumizer.metric_options", vol.metric_options, [spec.factory], f"metric {vol.metric!r}")
    if syl.enabled:
        spec = _spec(registry, "metric", syl.metric, "syllabus.metric")
        _check_options("syllabus.metric_options", syl.metric_options, [spec.factory], f"metric {syl.metric!r}")

    if config.model.factory is not None:
        _check_own_model(config)
    else:
        _check_backbone(config, registry)
    _check_g_init(config)
    model = config.model
    if model.fold is True and (model.depth_kernel != 1 or model.pool_depth):
        raise _fail(
            "model.fold",
            True,
            "'auto' or false (true runs f on each patch, which needs model.depth_kernel 1 and model.pool_depth false)",
        )

    for key, target_needed in (("f", "image"), ("g", None)):
        if key not in config.training.models and not (key == "g" and config.ablations):
            continue
        name = getattr(config.loss, key)
        spec = _spec(registry, "loss", name, f"loss.{key}")
        _check_options(f"loss.{key}_options", getattr(config.loss, f"{key}_options"), [spec.factory], f"loss {name!r}")
        if target_needed and spec.target != target_needed:
            raise ConfigError(
                f"loss.{key}: {name!r} is a {spec.target} loss but f gives image logits; allowed: an image loss "
                "such as 'cross_entropy'"
            )

    _check_ablations(config, registry)
    _check_defenses(config, registry)
    names = model_names(config)
    for j, area in enumerate(config.evaluation.certify_areas or []):
        if not 0 < area <= 1:
            raise _fail(f"evaluation.certify_areas[{j}]", area, "an area fraction in (0, 1]")

    labels: set[str] = set()
    for i, attack in enumerate(config.attacks):
        path = f"attacks[{i}]"
        spec = _spec(registry, "attack", attack.name, f"{path}.name")
        _check_options(f"{path}.options", attack.options, [spec.factory], f"attack {attack.name!r}")
        label = attack.label or attack.name
        if label in labels:
            raise ConfigError(f"{path}.label: {label!r} is used by two attacks; give each a distinct label")
        labels.add(label)
        for j, size in enumerate(attack.sizes):
            if spec.size_unit == "pixels" and (size != int(size) or size < 1):
                raise _fail(f"{path}.sizes[{j}]", size, f"a whole number of pixels >= 1 ({attack.name} counts pixels)")
            if spec.size_unit == "area" and not 0 < size <= 1:
                raise _fail(f"{path}.sizes[{j}]", size, f"an area fraction in (0, 1] ({attack.name} sizes are areas)")
        source = attack.options.get("source_model")
        if attack.options.get("source") == "transfer" and source is None and "f" not in config.training.models:
            raise _fail(
                f"{path}.options.source",
                "transfer",
                "'adaptive' (a transfer patch is trained on f, which "
                "this run does not train), or add f to training.models",
            )
        if source is not None and source not in names:
            raise _fail(f"{path}.options.source_model", source, f"the name of a model of this run ({', '.join(names)})")
        for j, model in enumerate(attack.models or []):
            if model not in names:
                raise _fail(f"{path}.models[{j}]", model, f"a model of this run ({', '.join(names)})")
    for model in syl.apply_to:
        if model not in ("f", "g"):
            raise _fail("syllabus.apply_to", model, "'f' or 'g'")
    from voldefense.config.training_checks import training_warnings

    for line in training_warnings(config):
        logger.warning("%s", line)


def _check_backbone(config: Config, registry: Any) -> None:
    backbone = _spec(registry, "backbone", config.model.backbone, "model.backbone")
    converter = backbone.converter
    if converter is None:
        from voldefense.models.convert import convert_to_3d as converter
    _check_options(
        "model.options",
        config.model.options,
        [backbone.factory, converter],
        f"backbone {config.model.backbone!r}",
        fixed=(
            "num_classes",
            "model_2d",
            "width",
            "stem",
            "depth_kernel",
            "pool_depth",
            "fold",
            "num_patches",
            "in_channels",
        ),
    )


def _check_own_model(config: Config) -> None:
    """model.factory: the import path resolves to a callable accepting model.options (nothing is built here;
    the runner builds f and checks model.weights against it before any training)."""
    from voldefense.models.user import FIXED_ARGUMENTS, check_factory_options, is_import_path

    model = config.model
    if not is_import_path(model.factory):
        raise _fail("model.factory", model.factory, "an import path 'package.module:function'")
    defaults = {f.name: f.default for f in dataclasses.fields(type(model))}
    for key in ("width", "stem"):
        if getattr(model, key) != defaults[key]:
            raise ConfigError(
                f"model.{key}: applies to the registered backbones, not to model.factory; pass your model's own "
                "arguments in model.options"
            )
    for key in FIXED_ARGUMENTS:
        if key in model.options:
            raise ConfigError(
                f"model.options.{key}: set from the dataset (the factory receives it when it has a {key} parameter); "
                "remove this option"
            )
    check_factory_options(model.factory, model.options)


def _check_g_init(config: Config) -> None:
    """model.weights and training.g_init name files that exist, and models this run has."""
    training, weights = config.training, config.model.weights
    if weights is not None:
        if not Path(weights).is_file():
            raise _fail("model.weights", weights, "the path of an existing weights file (torch.save(state_dict))")
        if "f" not in training.models:
            raise ConfigError(
                "model.weights: these are f's weights but f is not in training.models; add f, or give the file "
                "to training.g_init to start g from it"
            )
    init = training.g_init
    if init is None:
        return
    if "g" not in training.models and not config.ablations:
        raise ConfigError("training.g_init: this run trains no g (training.models has no g); remove g_init")
    if init == "f":
        if "f" not in training.models:
            raise _fail("training.g_init", init, "'f' only when training.models has f; else a path to f's weights")
        if "g" in training.models and training.models.index("g") < training.models.index("f"):
            raise ConfigError("training.g_init: 'f' needs f trained first; list f before g in training.models")
    elif not Path(init).is_file():
        raise _fail("training.g_init", init, "'f' or the path of an existing file of f's weights")


def model_names(config: Config) -> list[str]:
    """Every report row of a run, in training order: f, g, g_<ablation> per ablation, then each defense label."""
    names = list(config.training.models)
    names += [f"g_{ablation}" for ablation in config.ablations]
    names += [defense_label(d) for d in config.defenses]
    return names


def defense_label(defense: Any) -> str:
    """A defense's row name: its `label`, else its plugin name."""
    return defense.label or defense.name


def _check_ablations(config: Config, registry: Any) -> None:
    """Each ablation must change something: refuse one that repeats g's own setting (it would be a copy of g)."""
    seen: set[str] = set()
    for i, ablation in enumerate(config.ablations):
        path = f"ablations[{i}]"
        if ablation in seen:
            raise ConfigError(f"{path}: {ablation!r} is listed twice; list each ablation once")
        seen.add(ablation)
        same = {
            "identity_order": config.volumizer.ranking == "identity",
            "random_order": config.volumizer.ranking == "random",
            "no_curriculum": not (config.syllabus.enabled and "g" in config.syllabus.apply_to),
            "depth_kernel_3": config.model.depth_kernel == 3,
            "depth_kernel_full": config.model.depth_kernel == "full",
        }
        if ablation == "no_pal":
            same["no_pal"] = _spec(registry, "loss", config.loss.g, "loss.g").target == "image"
        if same.get(ablation):
            setting = {
                "identity_order": "volumizer.ranking is already 'identity'",
                "random_order": "volumizer.ranking is already 'random'",
                "no_pal": f"loss.g {config.loss.g!r} is already an image loss",
                "no_curriculum": "g is already trained without the curriculum",
                "depth_kernel_3": "model.depth_kernel is already 3",
                "depth_kernel_full": "model.depth_kernel is already 'full'",
            }[ablation]
            raise ConfigError(f"{path}: {ablation!r} would equal g ({setting}); remove it or change g's setting")


def _check_defenses(config: Config, registry: Any) -> None:
    taken = set(config.training.models) | {f"g_{a}" for a in config.ablations}
    for i, defense in enumerate(config.defenses):
        path = f"defenses[{i}]"
        spec = _spec(registry, "defense", defense.name, f"{path}.name")
        _check_options(f"{path}.options", defense.options, [spec.factory], f"defense {defense.name!r}")
        try:  # defenses check their option values when built (cheap: nothing is trained or allocated)
            spec.build(**defense.options)
        except ConfigError as err:
            raise ConfigError(f"{path}.options: {err}") from None
        label = defense_label(defense)
        if not _LABEL.fullmatch(label):
            raise _fail(f"{path}.label", label, "letters, digits, '_', '-' and '.' (it names a checkpoint file)")
        if label in taken:
            raise ConfigError(
                f"{path}.label: {label!r} is already the name of another model of this run; give each defense a "
                "distinct label"
            )
        taken.add(label)


_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


# -- serialisation -----------------------------------------------------------------------------------------


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_config(config: Config) -> str:
    """The resolved configuration as YAML (every default filled in)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)


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
