"""Pass 2 of loading a config: plugin names and options against the registry, dataset options and cross-field
rules, each mistake one `ConfigError` line before any training."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from voldefense.config.parse import invalid_value
from voldefense.config.schema import Config
from voldefense.errors import ConfigError, UnknownPluginError

logger = logging.getLogger(__name__)


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


def default_registry() -> Any:
    from voldefense.registry import get_registry

    return get_registry()


def check_config(config: Config, *, registry: Any = None) -> None:
    """Check plugin names and options, dataset options and cross-field rules; raises `ConfigError`."""
    if registry is None:
        registry = default_registry()
    _check_dataset(config)

    vol, syl = config.volumizer, config.syllabus
    if isinstance(vol.patch, list) and len(vol.patch) != 2:
        raise invalid_value("volumizer.patch", vol.patch, "an integer >= 1, or a list [height, width] of two integers")
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
        raise invalid_value(
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
            raise invalid_value(f"evaluation.certify_areas[{j}]", area, "an area fraction in (0, 1]")

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
                raise invalid_value(
                    f"{path}.sizes[{j}]", size, f"a whole number of pixels >= 1 ({attack.name} counts pixels)"
                )
            if spec.size_unit == "area" and not 0 < size <= 1:
                raise invalid_value(
                    f"{path}.sizes[{j}]", size, f"an area fraction in (0, 1] ({attack.name} sizes are areas)"
                )
        source = attack.options.get("source_model")
        if attack.options.get("source") == "transfer" and source is None and "f" not in config.training.models:
            raise invalid_value(
                f"{path}.options.source",
                "transfer",
                "'adaptive' (a transfer patch is trained on f, which "
                "this run does not train), or add f to training.models",
            )
        if source is not None and source not in names:
            raise invalid_value(
                f"{path}.options.source_model", source, f"the name of a model of this run ({', '.join(names)})"
            )
        for j, model in enumerate(attack.models or []):
            if model not in names:
                raise invalid_value(f"{path}.models[{j}]", model, f"a model of this run ({', '.join(names)})")
    _check_validation_attack(config, registry)
    for model in syl.apply_to:
        if model not in ("f", "g"):
            raise invalid_value("syllabus.apply_to", model, "'f' or 'g'")
    from voldefense.config.training_checks import training_warnings

    for line in training_warnings(config):
        logger.warning("%s", line)


def _check_validation_attack(config: Config, registry: Any) -> None:
    training = config.training
    spec = _spec(registry, "attack", training.val_attack, "training.val_attack")
    if spec.size_unit != "pixels":
        raise invalid_value(
            "training.val_attack",
            training.val_attack,
            "an attack whose sizes are pixels (training.val_attack_pixels is its budget), e.g. 'random_pixels'",
        )
    options = training.val_attack_options
    _check_options("training.val_attack_options", options, [spec.factory], f"attack {training.val_attack!r}")


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
        raise invalid_value("model.factory", model.factory, "an import path 'package.module:function'")
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
            raise ConfigError(
                f"model.weights: no file at {weights!r} (a relative path starts at the folder you run from); "
                "save f's weights there first (torch.save(state_dict), or a run's checkpoints/f.pt) or give its "
                "path with --set model.weights=PATH"
            )
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
            raise invalid_value(
                "training.g_init", init, "'f' only when training.models has f; else a path to f's weights"
            )
        if "g" in training.models and training.models.index("g") < training.models.index("f"):
            raise ConfigError("training.g_init: 'f' needs f trained first; list f before g in training.models")
    elif not Path(init).is_file():
        raise invalid_value("training.g_init", init, "'f' or the path of an existing file of f's weights")


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
            raise invalid_value(
                f"{path}.label", label, "letters, digits, '_', '-' and '.' (it names a checkpoint file)"
            )
        if label in taken:
            raise ConfigError(
                f"{path}.label: {label!r} is already the name of another model of this run; give each defense a "
                "distinct label"
            )
        taken.add(label)


_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
