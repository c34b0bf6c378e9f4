"""Summarise reproduction runs: every accuracy with its 95% Wilson interval, and mean / spread over seeds.

    python bench/reproduce_summary.py RUN_DIR [RUN_DIR ...] [--out summary.md]
    python bench/reproduce_summary.py RUN_DIR --images 100 --attacks sparse_pgd,patch_pgd --models g

The first RUN_DIR is the main run (every model and attack); further ones are extra seeds of the same config
(usually f and g only), whose clean and worst-case accuracies are pooled per model into mean ± standard
deviation. Reads each run's `results.json` (docs/runner.md); writes Markdown. The first table has one row per
model (clean, worst case per budget, certified, cost): the comparison tables of docs/defenses.md are made with it.
`--images N`, `--attacks` and `--models` recompute the worst cases of the first run on its first N attacked images,
over those attacks only, for those models (every run's evaluation subset is one seeded order of the test set, so
the first N images of two runs with the same seed are the same images): a row of one run set beside another.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from voldefense.evaluation.intervals import format_accuracy, mean_spread
from voldefense.results import share, worst_case


def load(run: Path) -> dict[str, Any]:
    path = run / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: pass the output folders of finished runs")
    return json.loads(path.read_text(encoding="utf-8"))


def size_text(row: dict[str, Any]) -> str:
    return f"{row['size']:g} px" if row.get("size_unit") == "pixels" else f"{100 * row['size']:g}% area"


def subset(results: dict[str, Any], images: int | None, attacks: list[str], models: list[str]) -> dict[str, Any]:
    """The run's record restricted to those models and attacks (all when empty) and to each row's first `images`
    images, with every worst case recomputed from the rows' per-image outcomes."""
    keep_model = (lambda name: name in models) if models else (lambda name: True)
    rows = [
        dict(row, survived=row["survived"][:images] if images else row["survived"])
        for row in results["rows"]
        if keep_model(row["model"]) and (not attacks or row["attack"] in attacks)
    ]
    for row in rows:  # on a subset a row's attacked accuracy is the share of its images that survived
        row["num_images"], row["attacked_accuracy"] = len(row["survived"]), share(row["survived"])
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["size_unit"], float(row["size"]))].append(row)
    worst = []
    for (model, unit, size), members in groups.items():
        robust = worst_case([member["survived"] for member in members])
        attacks_here = [member["attack"] for member in members]
        worst.append(
            dict(
                model=model,
                size_unit=unit,
                size=size,
                attacks=attacks_here,
                images=len(robust),
                robust_accuracy=share(robust),
            )
        )
    chosen = {name: entry for name, entry in results["models"].items() if keep_model(name)}
    return dict(results, models=chosen, rows=rows, worst_case=worst)


def _certified_cells(entry: dict[str, Any]) -> dict[float, str]:
    certified = entry.get("certified") or []
    cells = certified.values() if isinstance(certified, dict) else certified  # v1 files: a mapping by area
    return {float(c["area"]): format_accuracy(c["accuracy"], int(c["images"])) for c in cells}


def comparison_table(results: dict[str, Any]) -> list[str]:
    """One row per model: clean accuracy, the worst case over every attack at each budget and the certified
    accuracy at each area, each with its 95% Wilson interval, then training seconds and inference cost."""
    budgets = sorted(
        {(row["size_unit"], float(row["size"])) for row in results["worst_case"]},
        key=lambda b: (b[0] != "pixels", b[1]),
    )
    areas = sorted({area for entry in results["models"].values() for area in _certified_cells(entry)})
    worst = {(row["model"], row["size_unit"], float(row["size"])): row for row in results["worst_case"]}
    header = ["model", "clean", *(f"worst {size_text({'size': s, 'size_unit': u})}" for u, s in budgets)]
    header += [f"certified {100 * a:g}%" for a in areas] + ["train s", "inference ms/img"]
    lines = ["## One row per model (%, 95% Wilson interval; n images)", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, entry in results["models"].items():
        n = int(entry.get("clean_images", 0))
        cells = [name, f"{format_accuracy(entry.get('clean_accuracy', float('nan')), n)} (n={n})"]
        for unit, size in budgets:
            row = worst.get((name, unit, size))
            images = int(row["images"]) if row else 0
            cells.append(f"{format_accuracy(row['robust_accuracy'], images)} (n={images})" if row else "-")
        certified = _certified_cells(entry)
        cells += [certified.get(area, "-") for area in areas]
        passes = entry.get("forward_passes_per_image")
        ms = entry.get("inference_ms_per_image")
        cost = "-" if ms is None else f"{ms:.2f}" + (f" ({passes:.1f} passes)" if passes else "")
        seconds = entry.get("train_seconds")
        cells += ["-" if seconds is None else f"{seconds:.0f}", cost]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main_tables(results: dict[str, Any]) -> list[str]:
    lines = ["## Clean and certified accuracy (%, 95% Wilson interval)", ""]
    lines += ["| model | clean | certified |", "| --- | --- | --- |"]
    for name, entry in results["models"].items():
        n = int(entry.get("clean_images", 0))
        certified = entry.get("certified") or []
        cells = certified.values() if isinstance(certified, dict) else certified  # v1 files: a mapping by area
        cert = "; ".join(f"{100 * c['area']:g}%: {format_accuracy(c['accuracy'], int(c['images']))}" for c in cells)
        lines.append(f"| {name} | {format_accuracy(entry.get('clean_accuracy', float('nan')), n)} | {cert or '-'} |")
    lines += ["", "## Attacked accuracy (%, 95% Wilson interval over the attacked images)", ""]
    lines += ["| attack | budget | model | images | attacked |", "| --- | --- | --- | ---: | --- |"]
    for row in results["rows"]:
        n = int(row["num_images"])
        lines.append(
            f"| {row['attack']} | {size_text(row)} | {row['model']} | {n} | "
            f"{format_accuracy(row['attacked_accuracy'], n)} |"
        )
    lines += ["", "## Worst case over every attack at a budget (per image)", ""]
    lines += ["| model | budget | attacks | images | robust |", "| --- | --- | --- | ---: | --- |"]
    for row in results["worst_case"]:
        n = int(row["images"])
        lines.append(
            f"| {row['model']} | {size_text(row)} | {', '.join(row['attacks'])} | {n} | "
            f"{format_accuracy(row['robust_accuracy'], n)} |"
        )
    return lines


def seed_table(runs: list[dict[str, Any]]) -> list[str]:
    """Clean and worst-case accuracy per model over the runs: each run's value with its training epochs (extra
    seeds may use a shorter schedule, and the pooled spread then mixes schedules: the table says so), and the mean
    ± standard deviation."""
    clean: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    worst: dict[tuple[str, str], list[float]] = defaultdict(list)
    for results in runs:
        for name, entry in results["models"].items():
            if "clean_accuracy" in entry:
                clean[name].append((entry["clean_accuracy"], entry.get("epochs")))
        for row in results["worst_case"]:
            worst[(row["model"], size_text(row))].append(row["robust_accuracy"])
    lines = [f"## Over {len(runs)} seeds (mean ± standard deviation, %; models present in every seed)", ""]
    lines += ["| model | figure | seeds | per seed (epochs) | mean ± sd |", "| --- | --- | ---: | --- | --- |"]
    for name, pairs in clean.items():
        if len(pairs) == len(runs):
            mean, sd = mean_spread([value for value, _ in pairs])
            each = ", ".join(f"{100 * value:.1f} ({epochs if epochs is not None else '?'})" for value, epochs in pairs)
            lines.append(f"| {name} | clean | {len(pairs)} | {each} | {100 * mean:.1f} ± {100 * sd:.1f} |")
    for (name, budget), values in worst.items():
        if len(values) == len(runs):
            mean, sd = mean_spread(values)
            each = ", ".join(f"{100 * v:.1f}" for v in values)
            spread = f"{100 * mean:.1f} ± {100 * sd:.1f}"
            lines.append(f"| {name} | worst case {budget} | {len(values)} | {each} | {spread} |")
    if len({epochs for pairs in clean.values() for _, epochs in pairs}) > 1:
        lines += ["", "The seeds were trained for different numbers of epochs: the spread mixes schedules."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--images", type=int, default=None, help="the first run's first N attacked images only")
    parser.add_argument("--attacks", default="", help="comma-separated attack labels of the first run to keep")
    parser.add_argument("--models", default="", help="comma-separated models of the first run to keep")
    args = parser.parse_args(argv)
    if args.images is not None and args.images < 1:
        parser.error("--images: give a positive number of images")
    runs = [load(run) for run in args.runs]
    pick = [name for name in args.attacks.split(",") if name], [name for name in args.models.split(",") if name]
    if args.images or pick[0] or pick[1]:
        for name in pick[0]:
            if name not in {row["attack"] for row in runs[0]["rows"]}:
                parser.error(f"--attacks: {name!r} is not an attack of {args.runs[0]}")
        for name in pick[1]:
            if name not in runs[0]["models"]:
                parser.error(f"--models: {name!r} is not a model of {args.runs[0]}")
        runs[0] = subset(runs[0], args.images, *pick)
    lines = [f"# Reproduction summary: {', '.join(str(r) for r in args.runs)}", ""]
    lines += comparison_table(runs[0]) + [""] + main_tables(runs[0])
    if len(runs) > 1:
        lines += [""] + seed_table(runs)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
