"""Seconds per image, success rate and queries of every registered pixel / area attack, side by side.

Trains a small CIFAR-size CNN briefly (toy data by default; real CIFAR-10 with --cifar when the files exist),
then runs each attack plugin registered for pixels or area on the same images in one process. ART's
PixelAttack (`pixel`) and `pixel_batched` run at the same query budget and population: `pixel_batched` gets
exactly the most queries ART can spend on an image (1 clean check + population x (max_iter + 1) + max_iter
success checks + 1 final check), and the ratio of their seconds per image is printed.

    OMP_NUM_THREADS=1 python bench/attacks.py --images 16
    python bench/attacks.py --images 64 --cifar --json bench-results/attacks.json   # device auto: GPU if any
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find the sibling _common module

from _common import add_common_arguments, machine_info, markdown_table, setup, timed, write_json  # noqa: E402

from voldefense.errors import VoldefenseError  # noqa: E402
from voldefense.evaluation.metrics import evaluate_attack, summarize  # noqa: E402
from voldefense.registry import get_registry  # noqa: E402
from voldefense.testing import accuracy, fit, make_toy_images, tiny_cnn  # noqa: E402

logger = logging.getLogger("bench.attacks")

DEFAULT_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"
COLUMNS = [
    "attack",
    "size",
    "success_rate",
    "mean_queries",
    "max_queries",
    "s_per_image",
    "speedup_vs_art",
    "note",
]


def art_population(pixels: int, channels: int) -> int:
    """ART's PixelAttack population: popsize = max(1, 400 // d) members per parameter, d = N (2 + C)."""
    d = pixels * (2 + channels)
    return d * max(1, 400 // d)


def art_max_queries(pixels: int, channels: int, max_iter: int) -> int:
    """The most model evaluations the `pixel` plugin can spend on one image (checked against a counter)."""
    return 1 + art_population(pixels, channels) * (max_iter + 1) + max_iter + 1


def parse_sizes(text: str, kind: type) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(train images, train labels, attacked images, their labels, number of classes)."""
    n_train = args.train_images
    if args.cifar:
        train_file, test_file = args.data_dir / "train.npz", args.data_dir / "test.npz"
        if not test_file.exists():
            raise SystemExit(f"--cifar: {test_file} not found; pass --data-dir or drop --cifar for toy data")
        source = np.load(train_file) if train_file.exists() else np.load(test_file)
        test = np.load(test_file)
        offset = 0 if train_file.exists() else args.images  # never train on the attacked images

        def to_tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0

        xtr = to_tensor(source["x"][offset : offset + n_train])
        ytr = torch.from_numpy(source["y"][offset : offset + n_train]).long()
        xte, yte = to_tensor(test["x"][: args.images]), torch.from_numpy(test["y"][: args.images]).long()
        return xtr, ytr, xte, yte, 10
    x, y = make_toy_images(n_train + args.images, num_classes=args.classes, seed=args.seed)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], args.classes


def plan(args: argparse.Namespace, channels: int) -> list[tuple[str, float, dict[str, Any], str]]:
    """(attack, size, options, note) for every run, ART's PixelAttack before pixel_batched at each N."""
    registry = get_registry()
    names = registry.names("attack")
    wanted = set(parse_sizes(args.attacks, str)) if args.attacks else None
    overrides = json.loads(args.options) if args.options else {}
    pixel_sizes, area_sizes = parse_sizes(args.pixels, int), parse_sizes(args.areas, float)
    runs: list[tuple[str, float, dict[str, Any], str]] = []
    order = sorted(names, key=lambda n: (n != "pixel", n != "pixel_batched", n))
    for name in order:
        if wanted is not None and name not in wanted:
            continue
        spec = registry.get("attack", name)
        sizes = pixel_sizes if spec.size_unit == "pixels" else area_sizes
        for size in sizes:
            options: dict[str, Any] = {}
            note = ""
            if name == "pixel":
                options = {"max_iter": args.art_max_iter}
                note = f"ART PixelAttack max_iter={args.art_max_iter}"
            elif name == "pixel_batched":
                budget = art_max_queries(size, channels, args.art_max_iter)
                options = {"population": art_population(size, channels), "max_queries": budget}
                note = "same population and query budget as ART"
            elif name == "pixel_exhaustive":
                if size != 1:
                    continue
                note = "exact over 8 corner colours"
            options.update(overrides.get(name, {}))
            runs.append((name, size, options, note))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16, help="attacked images (default 16)")
    parser.add_argument("--pixels", default="1,3", help="pixel budgets N for pixel attacks (default 1,3)")
    parser.add_argument("--areas", default="0.05", help="area fractions for patch attacks (default 0.05)")
    parser.add_argument("--attacks", default="", help="comma-separated attack names (default: all registered)")
    parser.add_argument("--options", default="", help='JSON per attack, e.g. \'{"patch": {"iterations": 20}}\'')
    parser.add_argument("--art-max-iter", type=int, default=10, help="ART PixelAttack generations (default 10)")
    parser.add_argument("--cifar", action="store_true", help="real CIFAR-10 from --data-dir instead of toy data")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_CIFAR)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--classes", type=int, default=4, help="classes of the toy task")
    parser.add_argument("--width", type=int, default=16, help="width of the CNN under attack")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = setup(args)

    xtr, ytr, xte, yte, classes = load_data(args)
    model: nn.Module = tiny_cnn(classes, width=args.width)
    _, train_seconds = timed(lambda: fit(model, xtr, ytr, epochs=args.epochs, seed=args.seed), torch.device("cpu"))
    model = model.to(device).eval()
    xte, yte = xte.to(device), yte.to(device)
    clean_acc = accuracy(model, xte, yte)
    with torch.no_grad():  # warm-up: CUDA context and kernel selection must not be billed to the first attack
        model(xte[:1].expand(256, -1, -1, -1).contiguous())
    logger.info(
        "model: %d-class CNN (width %d), %.1f s training, clean accuracy %.3f on %d images",
        classes,
        args.width,
        train_seconds,
        clean_acc,
        len(yte),
    )

    rows: list[dict[str, Any]] = []
    art_seconds: dict[float, float] = {}
    for name, size, options, note in plan(args, xte.shape[1]):
        logger.info("running %s at size %s %s", name, size, options or "")
        try:
            attack = get_registry().get("attack", name).build(**options)
            outcome = evaluate_attack(model, attack, xte, yte, size, seed=args.seed)
        except (VoldefenseError, ImportError, RuntimeError) as err:
            rows.append({"attack": name, "size": size, "note": f"failed: {type(err).__name__}: {err}"})
            continue
        summary = summarize(outcome)
        row: dict[str, Any] = {
            "attack": name,
            "size": size,
            "success_rate": summary.attack_success_rate,
            "mean_queries": summary.mean_queries,
            "max_queries": float(outcome.queries.max()) if outcome.queries.numel() else math.nan,
            "s_per_image": summary.seconds_per_image,
            "attacked_accuracy": summary.attacked_accuracy,
            "clean_accuracy": summary.clean_accuracy,
            "options": options,
            "note": note,
        }
        if name == "pixel":
            art_seconds[size] = summary.seconds_per_image
        if name == "pixel_batched" and size in art_seconds and summary.seconds_per_image > 0:
            row["speedup_vs_art"] = art_seconds[size] / summary.seconds_per_image
        rows.append(row)

    print(f"\nmachine: {machine_info(device)}")
    print(
        f"model: {classes}-class CNN width {args.width}, clean accuracy {clean_acc:.3f} on {len(yte)} images "
        f"({'CIFAR-10' if args.cifar else 'toy data'})\n"
    )
    print(markdown_table(rows, COLUMNS))
    for row in rows:
        if "speedup_vs_art" in row:
            art = next(r for r in rows if r["attack"] == "pixel" and r["size"] == row["size"])
            print(
                f"\nN={row['size']}: pixel_batched {row['speedup_vs_art']:.1f}x less time per image than ART "
                f"PixelAttack at the same budget; success {row['success_rate']:.3f} "
                f"vs {art['success_rate']:.3f}"
            )
    write_json(
        args.json,
        {
            "benchmark": "attacks",
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "machine": machine_info(device),
            "data": "cifar10" if args.cifar else "toy",
            "clean_accuracy": clean_acc,
            "images": len(yte),
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
