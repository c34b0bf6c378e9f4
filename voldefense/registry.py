"""The plugin registry: one pluggy manager, built-in plugins and entry-point plugins through the same hooks.

Usage::

    from voldefense.registry import get_registry
    spec = get_registry().get("metric", "mi")   # a MetricSpec
    metric = spec.build(bins=64)

Built-in plugins are an explicit list of modules (each `voldefense.plugins.<kind>` package lists its own in
``MODULES``), registered exactly like third-party ones — there is no registration by import side effect.
Third-party packages declare an entry point in the group ``voldefense``; each load is guarded, so one broken
plugin is reported (with its package and the error) and the others still work. Strict mode raises instead.

Environment variables:

- ``VOLDEFENSE_DISABLE_PLUGINS``: comma-separated entry-point or distribution names not to load (``-``, ``_``
  and case do not matter), or ``all`` to load no third-party plugin at all.
- ``VOLDEFENSE_STRICT_PLUGINS=1``: raise on the first plugin problem instead of warning.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import pluggy

from voldefense import hookspecs
from voldefense.errors import PluginError, UnknownPluginError
from voldefense.specs import SPEC_TYPES, PluginKind

BUILTIN_ORIGIN = "voldefense"
BUILTIN_PACKAGES = tuple(
    f"voldefense.plugins.{sub}" for sub in ("metrics", "backbones", "losses", "attacks", "defenses")
)

HOOK_FOR_KIND: dict[PluginKind, str] = {
    PluginKind.METRIC: "voldefense_metrics",
    PluginKind.BACKBONE: "voldefense_backbones",
    PluginKind.LOSS: "voldefense_losses",
    PluginKind.ATTACK: "voldefense_attacks",
    PluginKind.DEFENSE: "voldefense_defenses",
}


@dataclass(frozen=True)
class PluginEntry:
    """One registered component, as `voldefense plugins` lists it."""

    kind: str
    name: str
    origin: str
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "origin": self.origin, "description": self.description}


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered; the others still work."""


def builtin_plugin_modules() -> list[str]:
    """The module names of every built-in plugin, in a fixed order."""
    modules = []
    for package in BUILTIN_PACKAGES:
        for module in importlib.import_module(package).MODULES:
            modules.append(f"{package}.{module}")
    return modules


def _normalize(name: str) -> str:
    """PEP 503 normalisation: ``voldefense_extras``, ``Voldefense-Extras`` and ``voldefense-extras`` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _disabled_plugins() -> set[str]:
    raw = os.environ.get("VOLDEFENSE_DISABLE_PLUGINS", "")
    return {_normalize(part.strip()) for part in raw.split(",") if part.strip()}


def _strict_from_env() -> bool:
    return os.environ.get("VOLDEFENSE_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def _as_kind(kind: PluginKind | str) -> PluginKind:
    try:
        return PluginKind(kind)
    except ValueError:
        raise UnknownPluginError("plugin kind", str(kind), [k.value for k in PluginKind]) from None


class Registry:
    """Collects specs from a pluggy manager, attributing each to its origin (built-in or distribution)."""

    def __init__(self, *, strict: bool = False, load_entry_points: bool = True, load_builtins: bool = True):
        self.strict = strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.failures: dict[str, str] = {}
        # Keys of failures found while collecting specs: forgotten when the specs are collected again, so a
        # registration after a bad hook does not report the same problem twice.
        self._collection_failures: list[str] = []
        self._origins: dict[int, str] = {}
        self._collected: dict[PluginKind, dict[str, list[tuple[Any, str]]]] | None = None
        if load_builtins:
            for module_name in builtin_plugin_modules():
                self.register(importlib.import_module(module_name), origin=BUILTIN_ORIGIN, name=module_name)
        if load_entry_points:
            self.load_entry_points()

    # -- registration -------------------------------------------------------------------------------------

    def register(self, plugin: object, *, origin: str, name: str | None = None) -> None:
        """Register a plugin object or module; a plugin that pluggy rejects is reported as a failure."""
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as err:  # noqa: BLE001 - one broken plugin must not take the others down
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(origin, f"could not register {name or plugin!r}: {type(err).__name__}: {err}")
            return
        if not self.pm.get_hookcallers(plugin):
            # pluggy silently ignores functions without the marker; an author who forgot it would see nothing.
            self.pm.unregister(plugin)
            self._fail(
                origin,
                f"{name or plugin!r} implements no voldefense hook: mark the hook functions with "
                "@voldefense.hookspecs.hookimpl and name them voldefense_metrics, voldefense_backbones, ...",
            )
            return
        self._origins[id(plugin)] = origin
        self._collected = None

    def unregister(self, plugin: object) -> None:
        self.pm.unregister(plugin)
        self._origins.pop(id(plugin), None)
        self._collected = None

    def load_entry_points(self) -> None:
        """Load every plugin of the entry-point group, guarding each load."""
        disabled = _disabled_plugins()
        if "all" in disabled:
            return
        for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else ep.value.split(":")[0].split(".")[0]
            if _normalize(ep.name) in disabled or (dist is not None and _normalize(dist) in disabled):
                continue
            origin = dist
            try:
                plugin = ep.load()
            except Exception as err:  # noqa: BLE001 - report and continue (strict mode raises in _fail)
                error = f"{type(err).__name__}: {err}"
                self._fail(origin, f"entry point {ep.name!r} ({ep.value}) failed to import: {error}")
                continue
            self.register(plugin, origin=origin, name=f"{dist}:{ep.name}")

    def _fail(self, origin: str, message: str) -> str:
        """Record (and warn about) a problem of the plugin package `origin`; strict mode raises instead.
        Returns the key under which `failures` holds it: the origin, suffixed ``#n`` if it failed before."""
        key, n = origin, 1
        while key in self.failures:
            n += 1
            key = f"{origin}#{n}"
        self.failures[key] = message
        if self.strict:
            raise PluginError(f"plugin {origin}: {message}")
        warnings.warn(f"voldefense plugin {origin}: {message}", PluginWarning, stacklevel=3)
        return key

    def _fail_collecting(self, origin: str, message: str) -> None:
        self._collection_failures.append(self._fail(origin, message))

    # -- collection ---------------------------------------------------------------------------------------

    def _collect(self) -> dict[PluginKind, dict[str, list[tuple[Any, str]]]]:
        if self._collected is not None:
            return self._collected
        for key in self._collection_failures:
            self.failures.pop(key, None)
        self._collection_failures = []
        collected: dict[PluginKind, dict[str, list[tuple[Any, str]]]] = {kind: {} for kind in PluginKind}
        for kind, hook_name in HOOK_FOR_KIND.items():
            hook = getattr(self.pm.hook, hook_name)
            # Call implementations one by one so each spec is attributed to its plugin and an exception inside
            # one hook does not hide the specs of the others. Oldest registration first (pluggy keeps them in
            # registration order; it *calls* them newest first): a duplicate is then blamed on the newcomer,
            # e.g. the installed package rather than the built-in it collides with.
            for impl in hook.get_hookimpls():
                origin = self._origins.get(id(impl.plugin), impl.plugin_name)
                for spec in self._specs_from(impl, kind, origin):
                    collected[kind].setdefault(spec.name, []).append((spec, origin))
        for kind, by_name in collected.items():
            for name, claims in by_name.items():
                if len(claims) > 1:
                    origins = " and ".join(origin for _, origin in claims)
                    self._fail_collecting(claims[-1][1], f"{kind} {name!r} is registered by both {origins}")
        self._collected = collected
        return collected

    def _specs_from(self, impl: Any, kind: PluginKind, origin: str) -> Iterable[Any]:
        expected = SPEC_TYPES[kind]
        hook = HOOK_FOR_KIND[kind]
        try:
            result = impl.function()
            if result is None:
                return []
            # A lone spec, a string or a mapping is iterable or nearly so, but never what the author meant.
            lone = isinstance(result, (str, bytes, Mapping)) or hasattr(result, "factory")
            if lone or not isinstance(result, Iterable):
                self._fail_collecting(
                    origin,
                    f"hook {hook} returned {type(result).__name__}; it must yield {expected.__name__}s "
                    "(or return a list of them)",
                )
                return []
            specs = list(result)
        except Exception as err:  # noqa: BLE001 - report and continue
            self._fail_collecting(origin, f"hook {hook} raised {type(err).__name__}: {err}")
            return []
        good = []
        for spec in specs:
            if not isinstance(spec, expected):
                self._fail_collecting(
                    origin, f"hook {hook} yielded {type(spec).__name__}, expected {expected.__name__}"
                )
                continue
            good.append(spec)
        return good

    # -- lookup -------------------------------------------------------------------------------------------

    def names(self, kind: PluginKind | str) -> list[str]:
        return sorted(self._collect()[_as_kind(kind)])

    def get(self, kind: PluginKind | str, name: str) -> Any:
        """The spec of `kind` registered as `name`; an unknown name raises `UnknownPluginError` naming close
        matches, a name claimed by two plugins a `PluginError` naming both."""
        kind = _as_kind(kind)
        claims = self._collect()[kind].get(name)
        if not claims:
            raise UnknownPluginError(kind.value, name, self._collect()[kind])
        if len(claims) > 1:
            origins = " and ".join(origin for _, origin in claims)
            raise PluginError(
                f"{kind} {name!r} is registered by both {origins}: uninstall one, or disable one with "
                "VOLDEFENSE_DISABLE_PLUGINS=<name>"
            )
        return claims[0][0]

    def origin(self, kind: PluginKind | str, name: str) -> str:
        self.get(kind, name)
        return self._collect()[_as_kind(kind)][name][0][1]

    def entries(self) -> list[PluginEntry]:
        rows = []
        for kind, by_name in self._collect().items():
            for name in sorted(by_name):
                for spec, origin in by_name[name]:
                    rows.append(PluginEntry(kind.value, name, origin, spec.description))
        return rows


@lru_cache(maxsize=2)
def _registry_cache(strict: bool) -> Registry:
    return Registry(strict=strict)


# The seam tests replace (monkeypatch.setattr("voldefense.registry._cached_registry", ...)); the cache keeps
# its own name so that `reset_registry` still works while a replacement is in place.
_cached_registry = _registry_cache


def get_registry(strict: bool | None = None) -> Registry:
    """The process-wide registry (built once, on first use). `strict=None` reads VOLDEFENSE_STRICT_PLUGINS."""
    return _cached_registry(_strict_from_env() if strict is None else strict)


def reset_registry() -> None:
    """Forget the cached registry, e.g. after installing a plugin package in the same process."""
    _registry_cache.cache_clear()


def build(kind: PluginKind | str, name: str, **options: Any) -> Any:
    """Look up `name` of `kind` and build it with `options` (an unknown option is a ConfigError naming it)."""
    return get_registry().get(kind, name).build(**options)
