"""Check a finished run's certificates against its own attacks: no image certified against a square patch may
have been flipped by an attack that patch covers.

    python bench/certificate_check.py RUN_DIR [--device cpu] [--threads 2] [--out check.md]

Every model of the run with a certificate (PatchCleanser, derandomized smoothing, the majority-vote g) is loaded
from its checkpoint and certified again on the images its attacks ran on (the run's seeded evaluation order), at
the square side each attack needs: a patch attack of area a needs the side that covers its patch, a one-pixel
attack side 1. An image that is certified and correct but did not survive such an attack (results.json's
per-image outcomes, every view) is a broken certificate: it is listed, and the script exits 1. Pixel attacks on
more than one pixel are scattered, which no square certificate covers, so they are not checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from voldefense.attacks.regions import patch_sides
from voldefense.errors import VoldefenseError
from voldefense.report import size_label
from voldefense.results import Row, read_results
from voldefense.run import load_finished_run
from voldefense.run.grid import seeded


def covering_side(row: Row, height: int, width: int) -> int | None:
    """The square side whose certificate covers this row's perturbation; None when none does."""
    if row.size_unit == "area":
        return max(patch_sides(row.size, height, width))
    return 1 if row.size_unit == "pixels" and row.size == 1 else None


def check(run_dir: Path, device: str) -> tuple[list[str], int]:
    """Markdown lines (one per model and attack row checked) and the number of broken certificates."""
    finished = load_finished_run(run_dir, device=device)
    results = read_results(finished.paths.results)
    height, width = finished.data.image_shape[-2:]
    lines = [
        f"# Certificates against the attacks of {run_dir}",
        "",
        "| model | attack | budget | side | images | certified | certified and flipped |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    broken = 0
    for name, contender in finished.contenders.items():
        target = contender.target()
        covered = [
            (row, side)
            for row in results.rows
            if row.model == name and row.survived and (side := covering_side(row, height, width)) is not None
        ]
        if target.certify is None or not covered:
            continue
        images, labels = finished.data.first(max(len(row.survived) for row, _ in covered))
        with seeded(finished.resolved.config.training.seed, finished.device), torch.no_grad():
            certified = target.certify(images, labels, sorted({side for _, side in covered}))
        for row, side in covered:
            if side not in certified:  # beyond what this model certifies: nothing claimed, nothing to check
                continue
            claimed = certified[side][: len(row.survived)].tolist()
            flipped = [i for i, (c, s) in enumerate(zip(claimed, row.survived, strict=True)) if c and not s]
            broken += len(flipped)
            shown = f"{len(flipped)} (images {', '.join(map(str, flipped))})" if flipped else "0"
            budget = size_label(row.size, row.size_unit)
            lines.append(f"| {name} | {row.attack} | {budget} | {side} | {len(claimed)} | {sum(claimed)} | {shown} |")
    if len(lines) == 4:
        lines.append("| (no certified model with a covered attack in this run) | | | | | | |")
    return lines, broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the --out folder of a finished run")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.run_dir / "results.json").is_file():
        print(f"{args.run_dir / 'results.json'} does not exist: give the folder of a finished run", file=sys.stderr)
        return 2
    try:
        lines, broken = check(args.run_dir, args.device)
    except VoldefenseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if broken:
        print(f"{broken} certified images were flipped: a certificate is unsound", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
