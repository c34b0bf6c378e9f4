"""Does every budget of a run face an attack that searches? A budget attacked only by fixed protocols
(`AttackSpec.adaptive` False, e.g. `random_pixels`) reports an accuracy no adversary was looking for, so its
"worst case" overstates robustness; the loader warns in one line naming the budget and an attack to add."""

from __future__ import annotations

import logging
from typing import Any

from voldefense.config.checks import model_names
from voldefense.config.schema import Config

logger = logging.getLogger(__name__)


def _suggestion(registry: Any, size_unit: str) -> str | None:
    """An adaptive white-box attack of `size_unit` to add (searched on the attacked model itself), else any
    adaptive one; None when none is registered."""
    specs = [registry.get("attack", name) for name in registry.names("attack")]
    fitting = [s for s in specs if s.size_unit == size_unit and s.adaptive and not s.needs_source_model]
    white = [s for s in fitting if s.white_box]
    best = (white or fitting or [None])[0]
    return None if best is None else best.name


def non_adaptive_budgets(config: Config, registry: Any) -> list[str]:
    """One line per budget (size unit and size) that some model of the run faces only with non-adaptive
    attacks, naming the attacks, the models and an adaptive attack to add."""
    names = model_names(config)
    # (size unit, size) -> model -> [(attack label, adaptive)]
    coverage: dict[tuple[str, float], dict[str, list[tuple[str, bool]]]] = {}
    for attack in config.attacks:
        spec = registry.get("attack", attack.name)
        for size in attack.sizes:
            per_model = coverage.setdefault((spec.size_unit, float(size)), {})
            for model in attack.models or names:
                per_model.setdefault(model, []).append((attack.label or attack.name, spec.adaptive))
    lines = []
    for (unit, size), per_model in coverage.items():
        weak = [m for m, attacks in per_model.items() if not any(adaptive for _, adaptive in attacks)]
        if not weak:
            continue
        labels = sorted({label for m in weak for label, _ in per_model[m]})
        add = _suggestion(registry, unit)
        fix = f"add an adaptive attack such as {add} at that size" if add else "add an adaptive attack at that size"
        what = f"{size:g} pixel{'s' if size != 1 else ''}" if unit == "pixels" else f"area {size:g}"
        lines.append(
            f"attacks: budget {what} is attacked only by non-adaptive attacks ({', '.join(labels)}) for "
            f"{', '.join(weak)}, so its worst case is not a search for one; {fix}"
        )
    return lines


def warn_non_adaptive_budgets(config: Config, registry: Any) -> list[str]:
    """Log each line of `non_adaptive_budgets` as a warning; returns them."""
    lines = non_adaptive_budgets(config, registry)
    for line in lines:
        logger.warning(line)
    return lines
