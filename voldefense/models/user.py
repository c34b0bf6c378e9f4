"""A user's own 2D classifier f, named by import path, and its pretrained weights.

``model.factory: "package.module:function"`` (the convention of Hydra's ``_target_`` and Lightning's
``class_path``) names a callable that returns an ``nn.Module`` mapping images ``(B, C, H, W)`` in [0, 1] to
logits ``(B, K)``; ``model.options`` are its keyword arguments. It also receives ``num_classes`` and
``in_channels`` when it declares parameters of those names (and the options do not set them).

``model.weights: PATH`` is f's state dict (``torch.save(model.state_dict(), PATH)``, or a voldefense
checkpoint such as ``runs/x/checkpoints/f.pt``), read with ``torch.load(weights_only=True)`` so a weights file
cannot run code. Every way this can go wrong — module or function missing, the call failing, something other
than an ``nn.Module`` returned, weights whose names or shapes do not fit — is one `ConfigError` line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voldefense.errors import ConfigError

FIXED_ARGUMENTS = ("num_classes", "in_channels")
"""Arguments the runner passes to a user factory that declares them by name."""


def is_import_path(name: str) -> bool:
    """Whether a model name is an import path (``"package.module:function"``) rather than a plugin name."""
    return ":" in name


def _import_from_here(module_name: str) -> Any:
    """Import a module, also from the current folder: the ``voldefense`` console script does not put it on
    ``sys.path`` as ``python -m`` does, and a user's ``my_model.py`` usually lives beside their config."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        here = os.getcwd()
        top = module_name.split(".")[0]
        if err.name != top or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)  # appended: an installed package of the same name still wins
        return importlib.import_module(module_name)


def import_factory(target: str, *, what: str = "model.factory") -> Callable[..., Any]:
    """Import ``"package.module:function"`` (the attribute may be dotted: ``module:Class.method``)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what}: {target!r} must look like 'package.module:function'")
    try:
        found: Any = _import_from_here(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise ConfigError(
                f"{what}: module {module_name!r} cannot be found ({err}); make it importable (install its "
                "package, or run from the folder that contains it / add that folder to PYTHONPATH)"
            ) from None
        raise ConfigError(f"{what}: importing {module_name!r} failed: {err}") from None
    except Exception as err:  # noqa: BLE001 - any error inside the user's module is reported as one line
        raise ConfigError(f"{what}: importing {module_name!r} failed ({type(err).__name__}: {err})") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = sorted(n for n in dir(found) if not n.startswith("_"))
            raise ConfigError(
                f"{what}: {module_name!r} has no attribute {attribute!r} (public names: "
                f"{', '.join(names[:12]) or 'none'})"
            )
        found = getattr(found, part)
    if not callable(found):
        raise ConfigError(f"{what}: {target!r} is a {type(found).__name__}, not a function or class")
    return found


def factory_arguments(
    factory: Callable[..., Any], options: Mapping[str, Any], *, num_classes: int, in_channels: int
) -> dict[str, Any]:
    """The keyword arguments of the call: `options`, plus the fixed arguments the factory declares by name."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    fixed = {"num_classes": num_classes, "in_channels": in_channels}
    arguments = {k: v for k, v in fixed.items() if k in params and k not in options}
    arguments.update(options)
    return arguments


def check_factory_options(target: str, options: Mapping[str, Any], *, what: str = "model.options") -> None:
    """Config-time check: the function imports and accepts `options` (nothing is built)."""
    factory = import_factory(target)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{what}.{unknown[0]}: {target} does not accept this argument (accepted: {', '.join(accepted) or 'none'})"
        )


def build_user_model(
    target: str, options: Mapping[str, Any] | None = None, *, num_classes: int, in_channels: int = 3
) -> nn.Module:
    """Call the user's factory and check that it returned an ``nn.Module``."""
    factory = import_factory(target)
    arguments = factory_arguments(factory, options or {}, num_classes=num_classes, in_channels=in_channels)
    try:
        inspect.signature(factory).bind(**arguments)
    except TypeError as err:
        raise ConfigError(f"model.options: {target} cannot be called with {sorted(arguments)}: {err}") from None
    except ValueError:
        pass  # no signature (a builtin): let the call decide
    try:
        model = factory(**arguments)
    except Exception as err:  # noqa: BLE001 - the user's code failed; say where, in one line
        raise ConfigError(f"model.factory: {target}(...) failed ({type(err).__name__}: {err})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.factory: {target} returned a {type(model).__name__}, not a torch.nn.Module; it must return "
            "the model (images (B, C, H, W) in [0, 1] -> logits (B, K))"
        )
    return model


def read_state_dict(path: str | Path, *, what: str = "model.weights") -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save(model.state_dict())`` file or a voldefense checkpoint (its ``model``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is unusable here
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ConfigError(
            f"{what}: {path} cannot be read with torch.load(weights_only=True) ({first}); save the weights "
            "with torch.save(model.state_dict(), PATH)"
        ) from None
    if isinstance(state, dict) and "format_version" in state and isinstance(state.get("model"), dict):
        state = state["model"]  # a voldefense checkpoint: its model weights
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ConfigError(
            f"{what}: {path} is not a state dict (a mapping of parameter names to tensors); save it with "
            "torch.save(model.state_dict(), PATH)"
        )
    return state


def _names(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def fit_problems(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps `state` from loading into `model`: missing and unexpected names, shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_names(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {_names(shapes, 2)}")
    return problems


def load_user_weights(model: nn.Module, path: str | Path, *, what: str = "model.weights") -> None:
    """Load the weights file at `path` into `model`, or one `ConfigError` naming what does not fit."""
    state = read_state_dict(path, what=what)
    problems = fit_problems(model, state)
    if problems:
        raise ConfigError(
            f"{what}: {path} does not fit the model ({'; '.join(problems)}); save the state dict of the very "
            "model model.factory builds with these model.options"
        )
    model.load_state_dict(state, strict=True)


def check_output(model: nn.Module, in_channels: int, image_size: tuple[int, int], num_classes: int) -> None:
    """One forward pass on a blank image: f must return logits ``(1, K)`` with K the dataset's classes."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, in_channels, *image_size))
    except Exception as err:  # noqa: BLE001 - report the user's forward failure as one line
        raise ConfigError(
            f"model.factory: the model fails on one {in_channels}x{image_size[0]}x{image_size[1]} image "
            f"({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model.factory: the model must return logits (B, {num_classes}) for this dataset's {num_classes} "
            f"classes, got {shape}; set its number of classes (a num_classes parameter receives it)"
        )
