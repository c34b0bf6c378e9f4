"""PNG plots of a run (matplotlib's Agg canvas, no display and no global backend switch).

- `robustness_pixels.png`: attacked accuracy against the number of pixels, one line per model and attack, the
  worst case over attacks dashed (the paper's Figure 3a/3c).
- `robustness_area.png`: the same against patch area (Figure 3b/3d).
- `training.png`: loss, validation accuracy and the 1-pixel defense success rate per epoch (Figure 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def robustness_plot(results: dict[str, Any], unit: str, path: Path) -> Path | None:
    """Attacked accuracy vs budget for every attack measured in `unit` ("pixels" or "area"); None if none."""
    rows = [r for r in results.get("rows", []) if r["size_unit"] == unit]
    if not rows:
        return None
    figure, (ax,) = _figure()
    scale = 100.0 if unit == "area" else 1.0
    for model in results["models"]:
        for label in results["attacks"]:
            mine = sorted(
                (float(r["size"]), r["attacked_accuracy"]) for r in rows if r["model"] == model and r["attack"] == label
            )
            if mine:
                ax.plot(
                    [s * scale for s, _ in mine],
                    [100 * a for _, a in mine],
                    marker="o",
                    label=f"{model}: {label}",
                )
        worst = sorted(
            (float(c["size"]), c["robust_accuracy"])
            for c in results.get("worst_case", [])
            if c["model"] == model and c["size_unit"] == unit and len(c["attacks"]) > 1
        )
        if worst:
            ax.plot(
                [s * scale for s, _ in worst],
                [100 * a for _, a in worst],
                linestyle="--",
                color="black",
                alpha=0.6,
                label=f"{model}: worst case",
            )
    ax.set_xlabel("number of pixels" if unit == "pixels" else "patch area (% of image)")
    ax.set_ylabel("accuracy under attack (%)")
    ax.set_ylim(-2, 102)
    if unit == "pixels":
        ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("robustness vs " + ("pixels" if unit == "pixels" else "patch area"))
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
                ax.plot([e for e, _ in points], [scale * v for _, v in points], marker=".", label=model)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(figure, path)


def write_plots(results: dict[str, Any], metrics: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Write every plot the data allows into `folder`; returns the files written."""
    written = [
        robustness_plot(results, "pixels", folder / "robustness_pixels.png"),
        robustness_plot(results, "area", folder / "robustness_area.png"),
        training_plot(metrics, folder / "training.png"),
    ]
    return [p for p in written if p is not None]
