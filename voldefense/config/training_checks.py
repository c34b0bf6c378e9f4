"""Training settings derived from a config, and the checks that keep them honest.

- `optimizer_for(config, kind)`: the optimizer of f or of g (and g's ablations): the shared `optimizer` section
  with `optimizer_g`'s keys laid over it for g.
- `training_warnings(config)`: settings that are valid but do not do what they appear to say, one line each
  (logged at load time by `voldefense.config.load.check_config`). Today: the Patch Aggregate Loss summed over
  patches under SGD, whose effective learning rate is N times the stated one.
"""

from __future__ import annotations

import dataclasses

from voldefense.config.schema import Config, OptimizerConfig


def optimizer_for(config: Config, kind: str) -> OptimizerConfig:
    """The optimizer settings of model `kind` ("f"; "g" or "ablation" for g and its ablations)."""
    if kind == "f":
        return config.optimizer
    overrides = {k: v for k, v in dataclasses.asdict(config.optimizer_g).items() if v is not None}
    return dataclasses.replace(config.optimizer, **overrides)


def _patches(config: Config) -> int | None:
    """The number of patches per volume when the image size is known from the config, else None."""
    known = 32 if config.data.name in ("cifar10", "cifar100", "synthetic") else None
    size = config.data.options.get("image_size", known)
    if not isinstance(size, int):
        return None
    patch = config.volumizer.patch
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    if size % ph or size % pw:
        return None
    return (size // ph) * (size // pw)


def training_warnings(config: Config) -> list[str]:
    """One line per setting whose effect differs from what it states (see the module docstring)."""
    warnings = []
    trains_g = "g" in config.training.models or any(a != "no_pal" for a in config.ablations)
    reduction = config.loss.g_options.get("patch_reduction", "mean")
    optimizer = optimizer_for(config, "g")
    if trains_g and config.loss.g == "pal" and reduction == "sum" and optimizer.name == "sgd":
        n = _patches(config)
        factor = f"{n}x" if n else "N x (N = patches per image)"
        rate = f" = {optimizer.lr * n:g}" if n else ""
        warnings.append(
            f"loss.g_options.patch_reduction 'sum' under SGD: g's effective learning rate is {factor} the stated "
            f"{optimizer.lr:g}{rate}; use patch_reduction 'mean' (the default) or divide optimizer_g.lr by N"
        )
    return warnings
