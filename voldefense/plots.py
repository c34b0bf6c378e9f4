"""PNG plots of a run (matplotlib's Agg canvas, no display and no global backend switch).

- `robustness_pixels.png`: attacked accuracy against the number of pixels, one panel per attack and one for the
  worst case over attacks (dashed), one line per model (the paper's Figure 3a/3c).
- `robustness_area.png`: the same against patch area (Figure 3b/3d).
- `training.png`: loss, validation accuracy and the 1-pixel defense success rate per epoch (Figure 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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


def robustness_plot(results: RunResults, unit: str, path: Path) -> Path | None:
    """Attacked accuracy vs budget for every attack measured in `unit` ("pixels" or "area"); None if none.

    One panel per attack and one for the worst case over attacks, one line per model in each, so the legend
    stays readable with ablations and baselines in the run."""
    rows = [r for r in results.rows if r.size_unit == unit]
    if not rows:
        return None
    labels = [label for label in results.attacks if any(r.attack == label for r in rows)]
    worst_cells = [c for c in results.worst_case if c.size_unit == unit and len(c.attacks) > 1]
    panels: list[tuple[str, list[tuple[str, list[tuple[float, float]]]]]] = []
    for label in labels:
        lines = [
            (
                model,
                sorted((float(r.size), r.attacked_accuracy) for r in rows if r.model == model and r.attack == label),
            )
            for model in results.models
        ]
        panels.append((f"{label}", [(m, pts) for m, pts in lines if pts]))
    if worst_cells:
        lines = [
            (model, sorted((float(c.size), c.robust_accuracy) for c in worst_cells if c.model == model))
            for model in results.models
        ]
        panels.append(("worst case over attacks", [(m, pts) for m, pts in lines if pts]))
    figure, axes = _figure(len(panels))
    scale = 100.0 if unit == "area" else 1.0
    for ax, (title, lines) in zip(axes, panels, strict=True):
        for model, points in lines:
            ax.plot(
                [s * scale for s, _ in points],
                [100 * as_float(a) for _, a in points],  # null (not defined) leaves a gap
                marker="o",
                linestyle="--" if title.startswith("worst") else "-",
                label=model,
            )
        ax.set_xlabel("number of pixels" if unit == "pixels" else "patch area (% of image)")
        ax.set_ylabel("accuracy under attack (%)")
        ax.set_ylim(-2, 102)
        if unit == "pixels" and len({s for _, pts in lines for s, _ in pts}) > 1:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        ax.set_title(title, fontsize=9)
    return _save(figure, path)


def training_plot(metrics: Sequence[dict[str, Any]], path: Path) -> Path | None:
    if not metrics:
        return None
    panels = [
        ("loss", "training loss", 1.0),
        ("val_accuracy", "validation accuracy (%)", 100.0),
        ("val_defense_success_rate", "1-pixel defense success rate (%)", 100.0),
    ]
    figure, axes = _figure(len(panels))
    models = list(dict.fromkeys(row["model"] for row in metrics))
    for ax, (key, title, scale) in zip(axes, panels, strict=True):
        for model in models:
            points = [(row["epoch"], row[key]) for row in metrics if row["model"] == model and key in row]
            if points:
                ax.plot([e for e, _ in points], [scale * as_float(v) for _, v in points], marker=".", label=model)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(figure, path)


def write_plots(results: RunResults, metrics: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Write every plot the data allows into `folder`; returns the files written."""
    written = [
        robustness_plot(results, "pixels", folder / "robustness_pixels.png"),
        robustness_plot(results, "area", folder / "robustness_area.png"),
        training_plot(metrics, folder / "training.png"),
    ]
    return [p for p in written if p is not None]
