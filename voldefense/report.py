"""report.md from results.json: tables shaped like the paper's Table 2 — rows are models, columns are metrics.

Every table is built from the same shape of data: `results["models"]` (one entry per row: f, g, ablations of g,
baseline defenses) and `results["rows"]` (one per model, attack and size). A new kind of model is a new entry in
`models`; a new per-model figure (certified accuracy, inference time, ...) is one line in `MODEL_COLUMNS`. Columns
no model has are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.1f}"


def _signed_pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):+.1f}"


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _seconds(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1f}"


def _text(value: Any) -> str:
    return "—" if value is None else str(value).replace("|", "\\|")


# (key in results["models"][name], column title, formatter). Append to add a per-model column.
MODEL_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("description", "model", _text),
    ("parameters", "parameters", _count),
    ("epochs", "epochs", _count),
    ("train_seconds", "train s", _seconds),
    ("clean_accuracy", "clean acc %", _pct),
    ("certified_accuracy", "certified acc %", _pct),
]


def size_label(size: Any, unit: str) -> str:
    if unit == "area":
        return f"{100 * float(size):g}% area"
    return f"{int(size)} px"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def models_table(results: dict[str, Any]) -> list[str]:
    models = results.get("models", {})
    columns = [c for c in MODEL_COLUMNS if any(m.get(c[0]) is not None for m in models.values())]
    rows = [[f"**{name}**", *(fmt(entry.get(key)) for key, _, fmt in columns)] for name, entry in models.items()]
    return _table(["", *(title for _, title, _ in columns)], rows)


def attack_table(results: dict[str, Any], label: str) -> list[str]:
    """One attack: rows = models, per size the attacked accuracy, δ and defense success rate (Table 2)."""
    info = results["attacks"][label]
    rows_for = [r for r in results["rows"] if r["attack"] == label]
    sizes = sorted({float(r["size"]) for r in rows_for})
    header = ["", "clean acc %"]
    for size in sizes:
        name = size_label(size, info["size_unit"])
        header += [f"{name}: acc %", f"{name}: δ", f"{name}: DSR %"]
    rows = []
    for model in results["models"]:
        mine = {float(r["size"]): r for r in rows_for if r["model"] == model}
        if not mine:
            continue
        clean = next(iter(mine.values()))["clean_accuracy"]
        row = [f"**{model}**", _pct(clean)]
        for size in sizes:
            r = mine.get(size)
            row += (
                [
                    _pct(r["attacked_accuracy"]),
                    _signed_pct(r["robustness_delta"]),
                    _pct(r["defense_success_rate"]),
                ]
                if r
                else ["—", "—", "—"]
            )
        rows.append(row)
    return _table(header, rows)


def worst_case_table(results: dict[str, Any]) -> list[str]:
    """Rows = models, columns = budgets: the share of images no attack at that budget fooled."""
    cells = results.get("worst_case", [])
    # Pixel budgets first, then patch areas, each ascending (the paper's column order).
    budgets = sorted({(c["size_unit"], float(c["size"])) for c in cells}, key=lambda b: (b[0] != "pixels", b[1]))
    header = ["", *(size_label(size, unit) for unit, size in budgets)]
    rows = []
    for model in results["models"]:
        mine = {(c["size_unit"], float(c["size"])): c for c in cells if c["model"] == model}
        if mine:
            rows.append([f"**{model}**", *(_pct(mine[b]["robust_accuracy"]) if b in mine else "—" for b in budgets)])
    return _table(header, rows)


def training_table(metrics: Sequence[dict[str, Any]]) -> list[str]:
    last: dict[str, dict[str, Any]] = {}
    for row in metrics:
        last[row["model"]] = row
    rows = [
        [
            f"**{m}**",
            _count(r.get("epoch")),
            f"{r.get('loss', float('nan')):.3f}",
            _pct(r.get("train_accuracy")),
            _pct(r.get("val_accuracy")),
            _pct(r.get("val_defense_success_rate")),
        ]
        for m, r in last.items()
    ]
    return _table(["", "epoch", "loss", "train acc %", "val acc %", "val 1-px DSR %"], rows)


def render_report(results: dict[str, Any], metrics: Sequence[dict[str, Any]] = ()) -> str:
    """The whole report.md."""
    dataset = results.get("dataset", {})
    shape = "x".join(str(v) for v in dataset.get("image_shape", []))
    lines = [
        "# voldefense report",
        "",
        f"Dataset **{dataset.get('name', '?')}** ({dataset.get('classes', '?')} classes, images {shape}). "
        "Accuracies in %; δ = attacked − clean accuracy (points); DSR = defense success rate, the share of "
        "clean-correct images still correct after the attack. Definitions: docs/evaluation.md.",
        "",
        "## Models",
        "",
        *models_table(results),
    ]
    if results.get("worst_case"):
        lines += [
            "",
            "## Worst-case robust accuracy over all attacks",
            "",
            "An image counts as robust at a budget only if it is classified correctly clean and after every "
            "attack run at that budget.",
            "",
            *worst_case_table(results),
        ]
    for label, info in results.get("attacks", {}).items():
        kind = "white-box" if info.get("white_box") else "black-box"
        options = "".join(f", {k}={v}" for k, v in info.get("options", {}).items())
        lines += [
            "",
            f"## Attack `{label}` ({info['plugin']}, {kind}, {info['images']} images{options})",
            "",
            *attack_table(results, label),
        ]
    if metrics:
        lines += ["", "## Training (last epoch)", "", *training_table(metrics)]
    if not results.get("complete", True):
        lines += ["", "*Evaluation incomplete: these are the rows computed so far.*"]
    return "\n".join(lines) + "\n"
