"""Resolve once: a validated `Config` becomes the plugin specs and built objects of a run.

`resolve` is the only place a run calls the plugin registry; everything after it (contenders, training, the
attack grid, the rigor checks) receives specs and built objects, never a registry or a plugin name to look up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voldefense.config.checks import defense_label
from voldefense.config.schema import AttackConfig, Config
from voldefense.errors import ConfigError
from voldefense.run.ablations import ABLATIONS, GRecipe, g_recipe
from voldefense.specs import AttackSpec, BackboneSpec, DefenseSpec, LossSpec, MetricSpec


@dataclass(frozen=True)
class Resolved:
    """Every plugin a run uses, resolved: specs by role, and the objects that need no trained model built."""

    config: Config
    architecture: BackboneSpec | str  # a backbone plugin, or a user's own model by import path (model.factory)
    volumizer_metric: MetricSpec
    curriculum_metric: MetricSpec
    entropy: MetricSpec  # picks the "auto" reference of distance metrics
    losses: Mapping[str, LossSpec]  # by plugin name: f's, g's and each ablation's
    recipes: Mapping[str, GRecipe]  # g and each ablation of g, by model name
    attacks: Mapping[str, AttackSpec]  # by attack label, in config order
    attack_configs: Mapping[str, AttackConfig]  # by attack label
    defenses: Mapping[str, DefenseSpec]  # by defense label, in config order
    validation_attack: AttackSpec  # training.val_attack, the per-epoch validation attack (Figure 2)


def attack_label(attack: AttackConfig) -> str:
    return attack.label or attack.name


def resolve(config: Config, registry: Any = None) -> Resolved:
    """Look every plugin name of `config` up once (`registry`, or the process-wide one when None)."""
    if registry is None:
        from voldefense.registry import get_registry

        registry = get_registry()
    base = g_recipe(config)
    recipes = {"g": base} if "g" in config.training.models else {}
    for name in config.ablations:
        recipes[f"g_{name}"] = ABLATIONS[name].apply(base)
    if config.ablations:
        recipes.setdefault("g", base)  # the recipe ablations change; its model is built only when listed
    loss_names = {config.loss.f, *(r.loss for r in recipes.values())}
    return Resolved(
        config=config,
        architecture=config.model.factory or registry.get("backbone", config.model.backbone),
        volumizer_metric=registry.get("metric", config.volumizer.metric),
        curriculum_metric=registry.get("metric", config.syllabus.metric),
        entropy=registry.get("metric", "entropy"),
        losses={name: registry.get("loss", name) for name in sorted(loss_names)},
        recipes=recipes,
        attacks={attack_label(a): registry.get("attack", a.name) for a in config.attacks},
        attack_configs={attack_label(a): a for a in config.attacks},
        defenses={defense_label(d): registry.get("defense", d.name) for d in config.defenses},
        validation_attack=registry.get("attack", config.training.val_attack),
    )


def check_against_data(resolved: Resolved, image_shape: tuple[int, int, int]) -> None:
    """Rules that need the data (image size), checked before anything is trained."""
    _check_defenses_against_data(resolved, image_shape)
    _, height, width = image_shape
    for i, attack in enumerate(resolved.config.attacks):
        # Declared on the spec (`AttackSpec.max_image_pixels`), e.g. pixel_exhaustive's 8 x H x W queries.
        limit = resolved.attacks[attack_label(attack)].image_pixel_limit(attack.options)
        if limit is not None and height * width > limit:
            raise ConfigError(
                f"attacks[{i}]: {attack.name} is for images up to {limit} pixels and these are "
                f"{height}x{width}; remove it, or raise attacks[{i}].options.max_pixels to run it anyway"
            )


def _check_defenses_against_data(resolved: Resolved, image_shape: tuple[int, int, int]) -> None:
    """Defenses with a `check_image_shape(image_shape)` (PatchCleanser's mask set, the LGS window) refuse
    configurations they cannot serve for these images here, before f is trained."""
    for i, entry in enumerate(resolved.config.defenses):
        label = defense_label(entry)
        defense = resolved.defenses[label].build(**entry.options)
        check = getattr(defense, "check_image_shape", None)
        if check is not None:
            try:
                check(tuple(image_shape))
            except ConfigError as err:
                raise ConfigError(f"defenses[{i}] ({label}): {err}") from None
