"""PNG plots of a run (matplotlib's Agg canvas, no display and no global backend switch).

- `robustness_pixels.png`: attacked accuracy against the number of pixels, one panel per attack and one for the
  worst case over attacks (dashed), one line per model (the paper's Figure 3a/3c). A budget where only
  non-adaptive attacks ran (random_pixels) is a hollow marker off the dashed line: an upper bound.
- `robustness_area.png`: the same against patch area (Figure 3b/3d).
- `training.png`: loss, validation accuracy and the 1-pixel defense success rate per epoch (Figure 2). Each loss
  function has its own panel: PAL (summed over patches) and cross-entropy are not on one axis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voldefense.jsonio import as_float
from voldefense.results import RunResults

logger = logging.getLogger(__name__)


def _figure(ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0 * ncols, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, axes


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, dpi=120, format="png")
    tmp.replace(path)
    return path


def worst_case_points(results: RunResults, unit: str) -> dict[str, list[tuple[float, float, bool]]]:
    """Per model, (size, worst-case robust accuracy, adaptive) at every budget measured in `unit`, ascending."""
    cells = [c for c in results.worst_case if c.size_unit == unit]
    points = {
        model: sorted((float(c.size), c.robust_accuracy, c.adaptive) for c in cells if c.model == model)
        for model in results.models
    }
    return {model: pts for model, pts in points.items() if pts}


def robustness_plot(results: RunResults, unit: str, path: Path) -> Path | None:
    """Attacked accuracy vs budget for every attack measured in `unit` ("pixels" or "area"); None if none.

    One panel per attack and, with several attacks, one for the worst case over attacks, one line per model in
    each, so the legend stays readable with ablations and baselines in the run. In the worst-case panel a budget
    only non-adaptive attacks reached is a hollow marker, not joined to the line: an upper bound, not a point of
    the curve."""
    rows = [r for r in results.rows if r.size_unit == unit]
    if not rows:
        return None
    labels = [label for label in results.attacks if any(r.attack == label for r in rows)]
    panels: list[tuple[str, dict[str, list[tuple[float, float, bool]]]]] = []
    for label in labels:
        lines = {
            model: sorted(
                (float(r.size), r.attacked_accuracy, True) for r in rows if r.model == model and r.attack == label
            )
            for model in results.models
        }
        panels.append((label, {m: pts for m, pts in lines.items() if pts}))
    if len(labels) > 1:
        worst = worst_case_points(results, unit)
        weak = any(not adaptive for pts in worst.values() for _, _, adaptive in pts)
        panels.append(
            (
                "worst case over attacks" + (" (hollow: non-adaptive only)" if weak else ""),
                worst,
            )
        )
    figure, axes = _figure(len(panels))
    scale = 100.0 if unit == "area" else 1.0
    # One colour per model in every panel: a panel some models skip (patch_rank runs on g only) must not recolour.
    colours = {model: f"C{i % 10}" for i, model in enumerate(results.models)}
    for ax, (title, lines) in zip(axes, panels, strict=True):
        worst_panel = title.startswith("worst")
        for model, points in lines.items():
            strong = [(s, a) for s, a, adaptive in points if adaptive]
            (line,) = ax.plot(
                [s * scale for s, _ in strong],
                [100 * as_float(a) for _, a in strong],  # null (not defined) leaves a gap
                marker="o",
                linestyle="--" if worst_panel else "-",
                label=model,
                color=colours.get(model),
            )
            upper = [(s, a) for s, a, adaptive in points if not adaptive]
            if upper:
                ax.plot(
                    [s * scale for s, _ in upper],
                    [100 * as_float(a) for _, a in upper],
                    marker="o",
                    linestyle="none",
                    markerfacecolor="none",
                    color=line.get_color(),
                    label=f"{model} (non-adaptive only)",
                )
        ax.set_xlabel("number of pixels" if unit == "pixels" else "patch area (% of image)")
        ax.set_ylabel("accuracy under attack (%)")
        ax.set_ylim(-2, 102)
        if unit == "pixels" and len({s for pts in lines.values() for s, _, _ in pts}) > 1:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        ax.set_title(title, fontsize=9)
    return _save(figure, path)


def loss_panels(
    metrics: Sequence[dict[str, Any]],
    losses: Mapping[str, tuple[str, str]] | None = None,
) -> list[tuple[str, list[str]]]:
    """(title, models) per loss function: losses of different functions or scales (PAL sums per-patch
    cross-entropy over the patches) never share an axis. `losses[model]` is (loss name, "image" | "patch")."""
    losses = losses or {}
    groups: dict[tuple[str, str], list[str]] = {}
    for model in dict.fromkeys(row["model"] for row in metrics if "loss" in row):
        groups.setdefault(losses.get(model, (f"loss of {model}", "image")), []).append(model)
    return [
        (
            f"training loss: {name}" + (" (summed over patches)" if target == "patch" else ""),
            models,
        )
        for (name, target), models in groups.items()
    ]


def training_plot(
    metrics: Sequence[dict[str, Any]],
    path: Path,
    losses: Mapping[str, tuple[str, str]] | None = None,
) -> Path | None:
    """Loss (one panel per loss function), validation accuracy and 1-pixel defense success rate per epoch."""
    if not metrics:
        return None
    panels: list[tuple[str, str, float, list[str] | None]] = [
        ("loss", title, 1.0, models) for title, models in loss_panels(metrics, losses)
    ]
    panels += [
        ("val_accuracy", "validation accuracy (%)", 100.0, None),
        ("val_defense_success_rate", "1-pixel defense success rate (%)", 100.0, None),
    ]
    figure, axes = _figure(len(panels))
    every = list(dict.fromkeys(row["model"] for row in metrics))
    for ax, (key, title, scale, models) in zip(axes, panels, strict=True):
        for model in models or every:
            points = [(row["epoch"], row[key]) for row in metrics if row["model"] == model and key in row]
            if points:  # one colour per model across the panels
                color = f"C{every.index(model) % 10}"
                ys = [scale * as_float(v) for _, v in points]
                ax.plot([e for e, _ in points], ys, marker=".", label=model, color=color)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(figure, path)


def model_losses(results: RunResults) -> dict[str, tuple[str, str]]:
    """Each model's training loss (name, target) from its entry; a baseline defense trains with f's loss."""
    f = results.models.get("f")
    default = (f.details.get("loss", "f's loss"), f.details.get("loss_target", "image")) if f else ("f's loss", "image")
    return {
        name: (entry.details["loss"], entry.details.get("loss_target", "image")) if "loss" in entry.details else default
        for name, entry in results.models.items()
    }


def write_plots(results: RunResults, metrics: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Write every plot the data allows into `folder`; returns the files written."""
    written = [
        robustness_plot(results, "pixels", folder / "robustness_pixels.png"),
        robustness_plot(results, "area", folder / "robustness_area.png"),
        training_plot(metrics, folder / "training.png", model_losses(results)),
    ]
    return [p for p in written if p is not None]
