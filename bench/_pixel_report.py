"""Few-pixel attack bench: per-image outcomes, Wilson intervals, and the success-against-queries plot.

An attack row keeps, for each attacked image, whether the model got it right when clean, whether the attack
flipped it, and the queries the attack spent on it. Because every attack here stops an image at its first
success, "flipped within q queries" is read straight off one run: the success curve at q is the share of
clean-correct images flipped with at most q queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate (NaN bounds when there are no trials)."""
    if trials == 0:
        return math.nan, math.nan
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def per_image(clean_correct: torch.Tensor, adversarial_correct: torch.Tensor, queries: torch.Tensor) -> dict:
    """JSON-ready per-image outcome of one attack row (the images the model classified right when clean)."""
    flipped = clean_correct & ~adversarial_correct.all(0)
    return {
        "clean_correct": clean_correct.tolist(),
        "flipped": flipped.tolist(),
        "queries": [int(q) for q in queries.tolist()],
    }


def success_stats(images: dict, first: int | None = None) -> dict[str, Any]:
    """Success rate among clean-correct images (of the first `first` images when given) with its interval."""
    correct = images["clean_correct"][:first]
    flipped = [f for f, c in zip(images["flipped"][:first], correct, strict=True) if c]
    trials, hits = len(flipped), sum(flipped)
    low, high = wilson_interval(hits, trials)
    return {"attacked": trials, "flipped": hits, "success_rate": hits / trials if trials else math.nan,
            "ci_low": low, "ci_high": high}


def success_curve(images: dict, grid: Sequence[float]) -> list[float]:
    """Share of clean-correct images flipped within each query count of `grid`."""
    rows = [(q, f) for q, f, c in zip(images["queries"], images["flipped"], images["clean_correct"], strict=True) if c]
    if not rows:
        return [math.nan for _ in grid]
    return [sum(1 for q, f in rows if f and q <= g) / len(rows) for g in grid]


def plot_success_against_queries(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """One panel per pixel budget N: success rate against queries (log scale) for every attack row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({row["size"] for row in rows if "images" in row})
    figure, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes), 3.8), squeeze=False, sharey=True)
    top = max((max(row["images"]["queries"]) for row in rows if "images" in row), default=10)
    grid = sorted({round(10 ** (k / 40)) for k in range(0, int(40 * math.log10(max(top, 10))) + 2)})
    for axis, size in zip(axes[0], sizes, strict=True):
        for row in rows:
            if row.get("size") != size or "images" not in row:
                continue
            curve = success_curve(row["images"], grid)
            label = f"{row['label']}: n={row['attacked']}, {row['s_per_image']:.3g} s/img"
            axis.step(grid, curve, where="post", label=label)
        axis.set_xscale("log")
        axis.set_xlabel("queries per image (model evaluations)")
        axis.set_title(f"N = {int(size)} pixel{'s' if size != 1 else ''}")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=6.5, loc="best", framealpha=0.6)
    axes[0][0].set_ylabel("attack success rate (clean-correct images)")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
