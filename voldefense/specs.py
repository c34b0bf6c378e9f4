"""Plugin specs: the small frozen records that plugin hooks yield.

A spec names a component and carries a *factory*; listing plugins never builds anything (no tensors, no
models, no GPU). Specs validate their own fields on construction, so a plugin with a bad name fails where it
is defined. This module imports no torch.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from voldefense.errors import ConfigError, PluginError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
OPTION_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MISSING = object()


class PluginKind(str, enum.Enum):
    METRIC = "metric"
    BACKBONE = "backbone"
    LOSS = "loss"
    ATTACK = "attack"
    DEFENSE = "defense"

    def __str__(self) -> str:
        return self.value


def _check_name(name: object, kind: PluginKind) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(
            f"invalid {kind} plugin name {name!r}: use 1-64 lowercase letters, digits or '_', starting with a letter"
        )


def _check_callable(value: object, what: str, name: str) -> None:
    if not callable(value):
        raise PluginError(f"{what} of plugin {name!r} is not callable (got {type(value).__name__})")


def build_with_options(factory: Callable[..., Any], options: dict[str, Any], *, what: str, **fixed: Any) -> Any:
    """Call `factory(**fixed, **options)`; an option the factory does not accept is a `ConfigError` naming it
    (never silently dropped)."""
    try:
        inspect.signature(factory).bind(**fixed, **options)
    except TypeError as err:
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # builtins without a signature: let the call itself decide
            params = {}
        accepted = sorted(p for p, v in params.items() if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD))
        accepted = [p for p in accepted if p not in fixed]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(
                f"{what} does not accept option(s) {', '.join(unknown)} (accepted: {', '.join(accepted) or 'none'})"
            ) from None
        raise ConfigError(f"{what}: {err}") from None
    return factory(**fixed, **options)


class LazyFactory:
    """A factory named by ``"package.module:attribute"`` and imported on first use.

    Plugin modules stay cheap to import (listing plugins imports no torch, ART, ...), and yet
    ``inspect.signature`` — and so `build_with_options` — sees the target's own signature: every option and its
    default is defined once, in the component itself, and an unknown option is named against the real list.
    """

    def __init__(self, target: str):
        module, sep, attribute = target.partition(":")
        if not sep or not module or not attribute:
            raise PluginError(f"lazy factory target {target!r} must look like 'package.module:attribute'")
        self.target = target
        self._resolved: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """Import and return the target (once)."""
        if self._resolved is None:
            module, _, attribute = self.target.partition(":")
            found: Any = importlib.import_module(module)
            for part in attribute.split("."):
                found = getattr(found, part)
            self._resolved = found
        return self._resolved

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.resolve())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy_factory({self.target!r})"


def lazy_factory(target: str) -> LazyFactory:
    """A spec factory that imports ``"package.module:attribute"`` only when a component is built (or its options
    are checked); see `LazyFactory`."""
    return LazyFactory(target)


@dataclass(frozen=True)
class _Spec:
    name: str
    factory: Callable[..., Any]
    description: str

    kind: PluginKind = field(init=False, default=PluginKind.METRIC, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name, self.kind)
        _check_callable(self.factory, "factory", self.name)
        if not isinstance(self.description, str) or not self.description.strip():
            raise PluginError(f"{self.kind} plugin {self.name!r} needs a non-empty description")

    def build(self, **options: Any) -> Any:
        """Build the component; an option the factory does not take is a `ConfigError` naming it."""
        return build_with_options(self.factory, options, what=f"{self.kind} {self.name!r}")


@dataclass(frozen=True)
class MetricSpec(_Spec):
    """An information metric.

    `factory(**options)` returns a callable `metric(x, reference=None) -> scores` mapping samples
    `(M, C, h, w)` in [0, 1] (and for distance metrics a reference broadcastable to that shape) to one score
    per sample `(M,)`.

    `distance`: True when the metric compares a sample with a reference; False for standalone metrics
    (entropy).
    `larger_is_simpler`: True when a larger score means "simpler / more similar to the reference"; this gives
    the orders `simple_first` / `complex_first` a meaning for every metric.
    `surrogate`: for a metric that is not differentiable in the samples (histogram counts), a factory taking the
    metric's own options and returning a differentiable approximation with the same call signature and score
    direction; attacks that steer the volumizer's ranking (`patch_rank`) follow its gradient. None: the metric
    is used as it is when it is differentiable, else its ranking cannot be steered.
    """

    distance: bool = True
    larger_is_simpler: bool = False
    surrogate: Callable[..., Any] | None = None
    kind: PluginKind = field(init=False, default=PluginKind.METRIC, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        for flag in ("distance", "larger_is_simpler"):
            if not isinstance(getattr(self, flag), bool):
                raise PluginError(f"metric plugin {self.name!r}: {flag} must be True or False")
        if self.surrogate is not None:
            _check_callable(self.surrogate, "surrogate", self.name)

    def build_surrogate(self, **options: Any) -> Any:
        """The differentiable surrogate built with the metric's `options`; None when none is declared."""
        if self.surrogate is None:
            return None
        return build_with_options(self.surrogate, options, what=f"surrogate of metric {self.name!r}")


@dataclass(frozen=True)
class BackboneSpec(_Spec):
    """A backbone architecture and its 2D→3D converter.

    `factory(num_classes, **options)` builds the undefended 2D model f (images `(B, C, H, W)` → logits
    `(B, K)`). `converter(model_2d, **options)` turns such a model into its 3D counterpart g (volumes
    `(B, C, N, ph, pw)` → per-patch logits `(B, N', K)`); None means the generic layer-by-layer converter
    `voldefense.models.convert.convert_to_3d`.
    """

    converter: Callable[..., Any] | None = None
    kind: PluginKind = field(init=False, default=PluginKind.BACKBONE, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.converter is not None:
            _check_callable(self.converter, "converter", self.name)


@dataclass(frozen=True)
class LossSpec(_Spec):
    """A training loss. `factory(**options)` returns `loss(logits, labels) -> scalar tensor`.

    `target`: "image" for losses on image logits `(B, K)` (used for f), "patch" for losses on per-patch logits
    `(B, N, K)` (used for g).
    """

    target: Literal["image", "patch"] = "image"
    kind: PluginKind = field(init=False, default=PluginKind.LOSS, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in ("image", "patch"):
            raise PluginError(f"loss plugin {self.name!r}: target must be 'image' or 'patch', not {self.target!r}")


@dataclass(frozen=True)
class BudgetOption:
    """An option whose doubling doubles an attack's effort, counted only `when` another option has a value.

    ``BudgetOption("candidates", when=("location", "search"))``: the candidate locations are searched (and cost
    queries) only with ``location: search``; with a random location they are unused, so doubling them would
    double nothing. `when` is read against the configured options, falling back to the factory's defaults.
    """

    name: str
    when: tuple[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not OPTION_PATTERN.match(self.name):
            raise PluginError(f"budget option name must be an identifier, got {self.name!r}")
        if self.when is not None and (
            not isinstance(self.when, tuple)
            or len(self.when) != 2
            or not isinstance(self.when[0], str)
            or not OPTION_PATTERN.match(self.when[0])
        ):
            raise PluginError(f"budget option {self.name!r}: when must be an (option, value) pair, got {self.when!r}")


@dataclass(frozen=True)
class AttackSpec(_Spec):
    """An evasion attack. `factory(**options)` returns an object with
    `run(model, images, labels, size, *, seed) -> voldefense.attacks.AttackResult`, where `model` is any
    `nn.Module` mapping images `(B, C, H, W)` in [0, 1] to image logits `(B, K)` (the whole defended
    pipeline, or f).

    The fields below declare the behaviour the core needs to know, so it never keys on a plugin's name:

    `size_unit`: "pixels" (size = number of pixels changed) or "area" (size = fraction of the image area).
    `white_box`: True when the attack uses gradients of the model under attack (the gradient-masking check
    compares white- and black-box attacks).
    `budget_options`: the integer options whose doubling doubles the attack's effort (iterations, queries,
    candidates); the budget-convergence check reruns the strongest attack with them doubled. Entries are option
    names or `BudgetOption`s that count only when another option has a given value. Empty: the check is not
    applicable (say why with `exact` or `adaptive`).
    `exact`: True when the attack is exhaustive over its candidate set, so more budget cannot change its result.
    `adaptive`: False for fixed protocols that do not search against the model (random pixels); a budget
    attacked only by such attacks has no real worst case, and the config loader warns.
    `needs_source_model`: True when the attack is optimised on a source model (a transfer attack) given as its
    ``source_model`` option, a model name in a config (f when none is named).
    `max_image_pixels`: images with more pixels (H x W) than this are refused up front, before anything is
    trained; an attack with this limit takes a ``max_pixels`` option that raises it deliberately.
    """

    size_unit: Literal["pixels", "area"] = "pixels"
    white_box: bool = False
    budget_options: tuple[str | BudgetOption, ...] = ()
    exact: bool = False
    adaptive: bool = True
    needs_source_model: bool = False
    max_image_pixels: int | None = None
    kind: PluginKind = field(init=False, default=PluginKind.ATTACK, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"attack plugin {self.name!r}"
        if self.size_unit not in ("pixels", "area"):
            raise PluginError(f"{where}: size_unit must be 'pixels' or 'area'")
        for flag in ("white_box", "exact", "adaptive", "needs_source_model"):
            if not isinstance(getattr(self, flag), bool):
                raise PluginError(f"{where}: {flag} must be True or False, got {getattr(self, flag)!r}")
        if not isinstance(self.budget_options, tuple):
            raise PluginError(f"{where}: budget_options must be a tuple of option names, got {self.budget_options!r}")
        for entry in self.budget_options:
            if isinstance(entry, BudgetOption):
                continue
            if not isinstance(entry, str) or not OPTION_PATTERN.match(entry):
                raise PluginError(
                    f"{where}: budget_options entries must be option names or BudgetOption, got {entry!r}"
                )
        names = [e.name if isinstance(e, BudgetOption) else e for e in self.budget_options]
        if len(set(names)) != len(names):
            raise PluginError(f"{where}: budget_options names an option twice ({', '.join(names)})")
        if self.budget_options and (self.exact or not self.adaptive):
            raise PluginError(
                f"{where}: an exact or non-adaptive attack has no budget to double; drop its budget_options"
            )
        limit = self.max_image_pixels
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise PluginError(f"{where}: max_image_pixels must be a positive integer or None, got {limit!r}")

    def budget_keys(self, options: dict[str, Any] | None = None) -> tuple[str, ...]:
        """The options a convergence rerun doubles for a run with `options` (a `BudgetOption` counts when its
        condition holds, reading the factory's defaults for options not given)."""
        options = options or {}
        keys: list[str] = []
        for entry in self.budget_options:
            if isinstance(entry, str):
                keys.append(entry)
                continue
            if entry.when is not None:
                option, wanted = entry.when
                if option in options:
                    value = options[option]
                else:
                    value = self.option_defaults().get(option, _MISSING)
                if value != wanted:
                    continue
            keys.append(entry.name)
        return tuple(keys)

    def option_defaults(self) -> dict[str, Any]:
        """The factory's keyword defaults (empty when its signature cannot be read)."""
        try:
            params = inspect.signature(self.factory).parameters
        except (TypeError, ValueError):
            return {}
        return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}

    def image_pixel_limit(self, options: dict[str, Any] | None = None) -> int | None:
        """The largest image (H x W pixels) this attack accepts with `options`; None: any size."""
        if self.max_image_pixels is None:
            return None
        return int((options or {}).get("max_pixels", self.max_image_pixels))


@dataclass(frozen=True)
class DefenseSpec(_Spec):
    """A baseline defense evaluated next to f and g. `factory(**options)` returns a defense object; see
    `voldefense.defenses` for its protocol."""

    kind: PluginKind = field(init=False, default=PluginKind.DEFENSE, repr=False)


SPEC_TYPES: dict[PluginKind, type[_Spec]] = {
    PluginKind.METRIC: MetricSpec,
    PluginKind.BACKBONE: BackboneSpec,
    PluginKind.LOSS: LossSpec,
    PluginKind.ATTACK: AttackSpec,
    PluginKind.DEFENSE: DefenseSpec,
}
