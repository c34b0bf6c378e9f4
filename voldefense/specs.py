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
    """

    distance: bool = True
    larger_is_simpler: bool = False
    kind: PluginKind = field(init=False, default=PluginKind.METRIC, repr=False)


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
class AttackSpec(_Spec):
    """An evasion attack. `factory(**options)` returns an object with
    `run(model, images, labels, size, *, seed) -> voldefense.attacks.AttackResult`, where `model` is any
    `nn.Module` mapping images `(B, C, H, W)` in [0, 1] to image logits `(B, K)` (the whole defended
    pipeline, or f).

    `size_unit`: "pixels" (size = number of pixels changed) or "area" (size = fraction of the image area).
    `white_box`: True when the attack uses gradients of the model under attack.
    """

    size_unit: Literal["pixels", "area"] = "pixels"
    white_box: bool = False
    kind: PluginKind = field(init=False, default=PluginKind.ATTACK, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size_unit not in ("pixels", "area"):
            raise PluginError(f"attack plugin {self.name!r}: size_unit must be 'pixels' or 'area'")


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
