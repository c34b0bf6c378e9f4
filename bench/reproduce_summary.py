"""Summarise reproduction runs: every accuracy with its 95% Wilson interval, and mean / spread over seeds.

    python bench/reproduce_summary.py RUN_DIR [RUN_DIR ...] [--out summary.md]

The first RUN_DIR is the main run (every model and attack); further ones are extra seeds of the same config
(usually f and g only), whose clean and worst-case accuracies are pooled per model into mean ± standard
deviation. Reads each run's `results.json` (docs/runner.md); writes Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from voldefense.evaluation.intervals import format_accuracy, mean_spread


def load(run: Path) -> dict[str, Any]:
    path = run / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: pass the output folders of finished runs")
    return json.loads(path.read_text(encoding="utf-8"))


def size_text(row: dict[str, Any]) -> str:
    return f"{row['size']:g} px" if row.get("size_unit") == "pixels" else f"{100 * row['size']:g}% area"


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
    args = parser.parse_args(argv)
    runs = [load(run) for run in args.runs]
    lines = [f"# Reproduction summary: {', '.join(str(r) for r in args.runs)}", ""]
    lines += main_tables(runs[0])
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
