"""report.md from a run's `RunResults`: tables shaped like the paper's Table 2 — rows are models, columns are
metrics.

Every table is built from the same record: `results.models` (one `ModelEntry` per row: f, g, ablations of g,
baseline defenses) and `results.rows` (one `Row` per model, attack and size). A new kind of model is a new entry
in `models`; a new per-model figure is one line in `MODEL_COLUMNS`. Columns no model has are left out. The main
"Results" table puts every model's clean, attacked, worst-case and certified accuracy and its costs side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from voldefense.results import ModelEntry, RunResults, WorstCaseCell
from voldefense.verdict import NON_ADAPTIVE_NOTE, verdict_lines


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


# (field of ModelEntry, column title, formatter). Append to add a per-model column.
def _millis(value: Any) -> str:
    return "—" if value is None else f"{float(value):.2f}"


def _passes(value: Any) -> str:
    return "—" if value is None else f"{float(value):,.1f}"


def _inference(entry: ModelEntry) -> str:
    """Inference ms per image, with the classifier forward passes per image where a model counts them
    (PatchCleanser: 36 when all masks agree, more when they do not)."""
    text = _millis(entry.inference_ms_per_image)
    passes = entry.forward_passes_per_image
    return text if passes is None else f"{text} ({_passes(passes)} passes)"


MODEL_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("description", "model", _text),
    ("parameters", "parameters", _count),
    ("epochs", "epochs", _count),
    ("train_seconds", "train s", _seconds),
    ("inference_ms_per_image", "inference ms/img", _millis),
    ("forward_passes_per_image", "forward passes/img", _passes),
    ("clean_accuracy", "clean acc %", _pct),
    ("one_pixel_exhaustive_accuracy", "1-px exhaustive acc %", _pct),
]


def size_label(size: Any, unit: str) -> str:
    if unit == "area":
        return f"{100 * float(size):g}% area"
    return f"{int(size)} px"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def models_table(results: RunResults) -> list[str]:
    models = results.models
    columns = [c for c in MODEL_COLUMNS if any(getattr(m, c[0]) is not None for m in models.values())]
    rows = [[f"**{name}**", *(fmt(getattr(entry, key)) for key, _, fmt in columns)] for name, entry in models.items()]
    return _table(["", *(title for _, title, _ in columns)], rows)


def _budgets(cells: Sequence[WorstCaseCell]) -> list[tuple[str, float]]:
    # Pixel budgets first, then patch areas, each ascending (the paper's column order).
    return sorted({(c.size_unit, float(c.size)) for c in cells}, key=lambda b: (b[0] != "pixels", b[1]))


def _areas(results: RunResults) -> list[tuple[float, int]]:
    """(area, square side) of every certified area of any model, ascending."""
    return sorted({(c.area, c.square_side) for m in results.models.values() for c in m.certified})


def _worst_cell(cell: WorstCaseCell | None, entry: ModelEntry) -> str:
    """A worst-case figure; `(n=K)` marks one over fewer images than the model's clean accuracy (its attacks
    shared only their first K images), so it is not comparable point for point with the clean column."""
    if cell is None:
        return "—"
    text = _pct(cell.robust_accuracy)
    if entry.clean_images is not None and cell.images < entry.clean_images:
        text += f" (n={cell.images})"
    return text if cell.adaptive else text + " †"


def copies_note(results: RunResults, label: str) -> str:
    """For an attack with several attacked copies per image (random_pixels: 5): its two figures are defined
    differently, and the difference is named where both appear."""
    copies = sorted({r.num_copies for r in results.rows if r.attack == label})
    if not copies or copies == [1]:
        return ""
    count = "/".join(str(c) for c in copies)
    return (
        f"`acc %` here averages the {count} attacked copies of each image (the paper's protocol; for a model with "
        "randomness, times its classification draws, `evaluation.draws`); the worst case "
        "and the rigor checks count an image as robust only if it survives every copy, so they read lower."
    )


def main_table(results: RunResults) -> list[str]:
    """The comparison: one row per model (f, g, ablations, baselines) with clean accuracy, each attack's
    accuracy at each size, the worst case per budget, certified accuracy per patch area, training time and
    inference time per image."""
    rows_by = {r.key: r for r in results.rows}
    attack_cols = []
    for label, info in results.attacks.items():
        sizes = sorted({float(r.size) for r in results.rows if r.attack == label})
        attack_cols += [(label, size, info.size_unit) for size in sizes]
    worst = {(c.model, c.size_unit, float(c.size)): c for c in results.worst_case}
    budgets = _budgets(results.worst_case)
    areas = _areas(results)
    header = ["", "clean acc %"]
    header += [f"{label} {size_label(size, unit)} %" for label, size, unit in attack_cols]
    header += [f"worst case {size_label(size, unit)} %" for unit, size in budgets]
    header += [f"certified {size_label(area, 'area')} ({side} px) %" for area, side in areas]
    header += ["train s", "inference ms/img"]
    table = []
    for name, entry in results.models.items():
        certified = {c.area: c for c in entry.certified}
        row = [f"**{name}**", _pct(entry.clean_accuracy)]
        row += [
            _pct(rows_by[(name, label, size)].attacked_accuracy) if (name, label, size) in rows_by else "—"
            for label, size, _ in attack_cols
        ]
        row += [_worst_cell(worst.get((name, unit, size)), entry) for unit, size in budgets]
        row += [_pct(certified[area].accuracy) if area in certified else "—" for area, _ in areas]
        row += [_seconds(entry.train_seconds), _inference(entry)]
        table.append(row)
    return _table(header, table)


def certified_table(results: RunResults) -> list[str]:
    """Rows = models with a certificate (or a note why none is defined), columns = patch areas."""
    areas = _areas(results)
    header = ["", *(f"{size_label(area, 'area')} ({side} px square) %" for area, side in areas), "note"]
    rows = []
    for name, entry in results.models.items():
        certified = {c.area: c for c in entry.certified}
        if not certified and not entry.certified_note:
            continue
        cells = [_pct(certified[area].accuracy) if area in certified else "—" for area, _ in areas]
        rows.append([f"**{name}**", *cells, _text(entry.certified_note)])
    return _table(header, rows) if rows else []


def checks_section(results: RunResults) -> list[str]:
    """The budget-convergence and gradient-masking checks (docs/rigor.md) as tables."""
    lines: list[str] = []
    convergence = results.convergence
    if convergence:
        rows = []
        for record in convergence:
            c = record.check
            if c.held is None:
                verdict = f"n.a. ({c.reason})"
            else:
                verdict = "held" if c.held else "**NOT held**"
            rows.append(
                [
                    f"**{record.model}**",
                    size_label(record.size, record.size_unit),
                    f"`{c.attack}`",
                    _pct(c.base_acc),
                    _pct(c.doubled_acc),
                    _signed_pct(0.0 - c.drop),  # 0.0 - 0.0 is +0.0: no "-0.0" in the table
                    _text(verdict),
                ]
            )
        tolerance = 100 * convergence[0].check.tolerance
        lines += [
            "",
            "### Budget convergence",
            "",
            "Per model and budget, the strongest attack (lowest robust accuracy) is rerun on the same images "
            f"with the same seed and twice its iterations / queries; the check holds when robust accuracy drops "
            f"by at most {tolerance:.1f} points.",
            "",
            *_table(["", "budget", "strongest attack", "robust %", "doubled %", "change", "verdict"], rows),
        ]
    masking = [m for m in results.masking if m.applicable]
    if masking:
        rows = [
            [
                f"**{m.model}**",
                size_label(m.size, m.size_unit),
                f"`{m.best_white_box}` {_pct(m.best_white_box_acc)}",
                f"`{m.best_black_box}` {_pct(m.best_black_box_acc)}",
                _count(m.black_box_only),
                "**FLAGGED**" if m.flagged else "ok",
            ]
            for m in masking
        ]
        tolerance = 100 * masking[0].tolerance
        lines += [
            "",
            "### Gradient masking",
            "",
            "Flagged when the best black-box attack's robust accuracy is below the best white-box attack's by "
            f"more than {tolerance:.1f} points at the same budget. 'black-box only': images only a black-box "
            "attack broke.",
            "",
            *_table(["", "budget", "best white-box %", "best black-box %", "black-box only", "verdict"], rows),
        ]
    return lines


def attack_table(results: RunResults, label: str) -> list[str]:
    """One attack: rows = models, per size the attacked accuracy, δ and defense success rate (Table 2)."""
    info = results.attacks[label]
    rows_for = [r for r in results.rows if r.attack == label]
    sizes = sorted({float(r.size) for r in rows_for})
    header = ["", "clean acc %"]
    for size in sizes:
        name = size_label(size, info.size_unit)
        header += [f"{name}: acc %", f"{name}: δ", f"{name}: DSR %"]
    rows = []
    for model in results.models:
        mine = {float(r.size): r for r in rows_for if r.model == model}
        if not mine:
            continue
        clean = next(iter(mine.values())).clean_accuracy
        row = [f"**{model}**", _pct(clean)]
        for size in sizes:
            r = mine.get(size)
            row += (
                [_pct(r.attacked_accuracy), _signed_pct(r.robustness_delta), _pct(r.defense_success_rate)]
                if r
                else ["—", "—", "—"]
            )
        rows.append(row)
        views = list(dict.fromkeys(v for r in mine.values() for v in r.views))
        for view in views:  # a defense's attack views; the row above is the worst case per image over them
            cells = [f"↳ {model} view `{view}`", "—"]
            for size in sizes:
                r = mine.get(size)
                figures = r.views.get(view) if r else None
                cells += [_pct(figures.attacked_accuracy if figures else None), "—", "—"]
            rows.append(cells)
    return _table(header, rows)


def worst_case_table(results: RunResults) -> list[str]:
    """Rows = models, columns = budgets: the share of images no attack at that budget fooled."""
    cells = results.worst_case
    budgets = _budgets(cells)
    header = ["", *(size_label(size, unit) for unit, size in budgets)]
    rows = []
    for model, entry in results.models.items():
        mine = {(c.size_unit, float(c.size)): c for c in cells if c.model == model}
        if mine:
            rows.append([f"**{model}**", *(_worst_cell(mine.get(b), entry) for b in budgets)])
    return _table(header, rows)


def training_table(metrics: Sequence[dict[str, Any]], models: Mapping[str, ModelEntry] | None = None) -> list[str]:
    """Each model's last epoch. Each model's loss is its own training loss (f's cross-entropy, g's PAL, ...), named
    beside it, so the column is not read as one quantity across models."""
    last: dict[str, dict[str, Any]] = {}
    for row in metrics:
        last[row["model"]] = row
    rows = [
        [
            f"**{m}**",
            _count(r.get("epoch")),
            _loss_name(models, m),
            f"{r.get('loss', float('nan')):.3f}",
            _pct(r.get("train_accuracy")),
            _pct(r.get("val_accuracy")),
            _pct(r.get("val_defense_success_rate")),
        ]
        for m, r in last.items()
    ]
    header = ["", "epoch", "training loss", "its value", "train acc %", "val acc %", "val DSR %"]
    note = (
        "Each loss is the model's own training loss, so values are comparable within a row's history, not across "
        "rows. val DSR: defense success rate under the per-epoch validation attack (`training.val_attack` at "
        "`training.val_attack_pixels` pixels in config.yaml)."
    )
    return [note, "", *_table(header, rows)]


def _loss_name(models: Mapping[str, ModelEntry] | None, model: str) -> str:
    entry = (models or {}).get(model)
    return str(entry.details.get("loss", "—")) if entry is not None else "—"


def render_report(results: RunResults, metrics: Sequence[dict[str, Any]] = ()) -> str:
    """The whole report.md."""
    dataset = results.dataset
    shape = "x".join(str(v) for v in dataset.image_shape)
    lines = [
        "# voldefense report",
        "",
        f"Dataset **{dataset.name}** ({dataset.classes} classes, images {shape}). "
        "Accuracies in %; δ = attacked − clean accuracy (points); DSR = defense success rate, the share of "
        "clean-correct images still correct after the attack. Definitions: docs/evaluation.md.",
        "",
    ]
    verdict = verdict_lines(results)
    if verdict:
        lines += [
            "## Verdict",
            "",
            "Each defended model against the undefended f: clean accuracy and worst-case robust accuracy (an image "
            "counts only if it survived every attack at that budget), each with the number of images n and its "
            "95% Wilson interval.",
            *verdict,
            "",
        ]
    lines += [
        "## Results",
        "",
        "One row per model: the undefended f, the volumized g, g's ablations (g_<ablation>) and the baseline "
        "defenses, on the same images with the same attacks. Worst case: an image counts only if it is "
        "correct clean and after every attack at that budget, over the images all of them ran on; `(n=K)` marks "
        "a budget whose attacks shared only K images, fewer than the clean column's; † a budget only "
        "non-adaptive attacks reached (an upper bound). Certified: correct and provably robust to any square patch "
        "of that size.",
        "",
        *main_table(results),
        "",
        "## Models",
        "",
        *models_table(results),
    ]
    if results.worst_case:
        lines += [
            "",
            "## Worst-case robust accuracy over all attacks",
            "",
            "An image counts as robust at a budget only if it is classified correctly clean and after every "
            "attack run at that budget, over the images all those attacks ran on (`(n=K)`: only K images).",
            "",
            *worst_case_table(results),
        ]
        if any(not c.adaptive for c in results.worst_case):
            lines += ["", NON_ADAPTIVE_NOTE]
    certified = certified_table(results)
    if certified:
        lines += [
            "",
            "## Certified accuracy",
            "",
            "Share of images classified correctly *and* certified against every square patch of the side shown "
            "(the patch area rounded up to a square; docs/certification.md).",
            "",
            *certified,
        ]
    checks = checks_section(results)
    if checks:
        lines += ["", "## Evaluation checks", *checks]
    for label, info in results.attacks.items():
        kind = "white-box" if info.white_box else "black-box"
        options = "".join(f", {k}={v}" for k, v in info.options.items())
        lines += [
            "",
            f"## Attack `{label}` ({info.plugin}, {kind}, {info.images} images{options})",
            "",
            *([copies_note(results, label), ""] if copies_note(results, label) else []),
            *attack_table(results, label),
        ]
    if metrics:
        lines += ["", "## Training (last epoch)", "", *training_table(metrics, results.models)]
    if not results.complete:
        lines += ["", "*Evaluation incomplete: these are the rows computed so far.*"]
    return "\n".join(lines) + "\n"
