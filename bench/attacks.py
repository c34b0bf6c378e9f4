"""Few-pixel (and patch) attacks side by side on the same images: success rate with its 95% interval, mean
queries and seconds per image, plus a plot of success rate against queries.

By default it runs ART's PixelAttack at its defaults (`max_iter` 100) and at `max_iter` 10, `pixel_batched`
(ART's population and ART max_iter-10's query budget), `pixel_search` (black-box) and `pixel_search_grad`
(white-box), and `pixel_exhaustive` (N = 1), at N = 1, 3 and 10. With `--cifar` the model is a CIFAR-10 CNN:
`--checkpoint PATH` (TorchScript or a checkpoint bench/_cifar_model.py wrote), else one trained under a time
limit and cached outside the repository (`--cache-dir`). Without `--cifar` a tiny CNN learns a toy task.

    OMP_NUM_THREADS=1 python bench/attacks.py --images 16 --art-max-iter 10         # toy data, quick
    python bench/attacks.py --cifar --images 50 --art-images 8,50 --plot docs/images/pixel_attacks_queries.png \\
        --json bench/results/cpu/pixel_attacks.json
    python bench/attacks.py --cifar --checkpoint f.pt --attacks pixel_search,patch_pgd --areas 0.05
    python bench/attacks.py --cifar --run runs/reproduce_cpu --model f --images 20      # the reproduction's f
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find the sibling modules

from _cifar_model import DEFAULT_CACHE, load_or_train, load_split  # noqa: E402
from _common import add_common_arguments, machine_info, markdown_table, setup, timed, write_json  # noqa: E402
from _pixel_report import per_image, plot_success_against_queries, success_stats  # noqa: E402

from voldefense.errors import VoldefenseError  # noqa: E402
from voldefense.evaluation.metrics import evaluate_attack, summarize  # noqa: E402
from voldefense.registry import get_registry  # noqa: E402
from voldefense.testing import accuracy, fit, make_toy_images, tiny_cnn  # noqa: E402

logger = logging.getLogger("bench.attacks")

DEFAULT_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"
DEFAULT_ATTACKS = "pixel,pixel_batched,pixel_search,pixel_search_grad,pixel_exhaustive"
COLUMNS = ["attack", "size", "attacked", "success_rate", "ci95", "mean_queries", "s_per_image", "note"]


def art_population(pixels: int, channels: int) -> int:
    """ART's PixelAttack population: popsize = max(1, 400 // d) members per parameter, d = N (2 + C)."""
    d = pixels * (2 + channels)
    return d * max(1, 400 // d)


def art_max_queries(pixels: int, channels: int, max_iter: int) -> int:
    """The most model evaluations the `pixel` plugin can spend on one image (checked against a counter)."""
    return 1 + art_population(pixels, channels) * (max_iter + 1) + max_iter + 1


def parse_list(text: str, kind: type) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def load_data(
    args: argparse.Namespace, device: torch.device
) -> tuple[nn.Module, dict[str, Any], torch.Tensor, torch.Tensor]:
    """(model, facts about it, attacked images, their labels)."""
    if args.cifar:
        if args.run is not None:  # a trained model of a `voldefense run` on CIFAR-10 (e.g. the reproduction's f)
            from voldefense.loading import load_model

            try:
                model = load_model(args.run, args.model)
            except VoldefenseError as err:
                raise SystemExit(f"--run {args.run}: {err}") from None
            info = {"source": f"{args.run} model {args.model} (voldefense run)"}
        else:
            model, info = load_or_train(
                args.checkpoint, args.cache_dir, args.data_dir, width=args.width, epochs=args.epochs,
                seconds=args.train_seconds, seed=args.seed, device=device,
            )
        x, y = load_split(args.data_dir, "test", max(args.images, args.accuracy_images))
        x = x.float() / 255.0
        info["clean_accuracy_test"] = accuracy(model.eval(), x[: args.accuracy_images], y[: args.accuracy_images])
        info["accuracy_images"] = min(args.accuracy_images, x.shape[0])
        info["data"] = "cifar10"
        return model, info, x[: args.images], y[: args.images]
    x, y = make_toy_images(args.train_images + args.images, num_classes=args.classes, seed=args.seed)
    model = tiny_cnn(args.classes, width=args.width)
    _, seconds = timed(lambda: fit(model, x[: args.train_images], y[: args.train_images], epochs=round(args.epochs),
                                   seed=args.seed), torch.device("cpu"))
    return model, {"data": "toy", "train_seconds": seconds}, x[args.train_images :], y[args.train_images :]


def plan(args: argparse.Namespace, channels: int) -> list[dict[str, Any]]:
    """One entry per row: attack name, label, size, options, how many images it attacks, a note."""
    registry = get_registry()
    overrides = json.loads(args.options) if args.options else {}
    art_iters = parse_list(args.art_max_iter, int)
    art_images = parse_list(args.art_images, int) or [args.images] * len(art_iters)
    if len(art_images) != len(art_iters):
        raise SystemExit("--art-images needs one image count per --art-max-iter value")
    runs: list[dict[str, Any]] = []
    for name in parse_list(args.attacks, str):
        spec = registry.get("attack", name)
        sizes = parse_list(args.pixels, int) if spec.size_unit == "pixels" else parse_list(args.areas, float)
        for size in sizes:
            variants: list[tuple[str, dict[str, Any], int, str]] = [(name, {}, args.images, "")]
            if name == "pixel":
                variants = [(f"pixel (ART, max_iter={k})", {"max_iter": k}, min(m, args.images),
                             "ART PixelAttack defaults" if k == 100 else "") for k, m in zip(art_iters, art_images,
                                                                                              strict=True)]
            elif name == "pixel_batched":
                budget = art_max_queries(size, channels, min(art_iters))
                variants = [(name, {"population": art_population(size, channels), "max_queries": budget},
                             args.images, f"ART max_iter={min(art_iters)}'s population and budget")]
            elif name == "pixel_exhaustive" and size != 1:
                continue
            if name == "pixel_search" and min(art_images) < args.images:
                # pixel_search again on the images ART's slowest setting attacked: its comparison with ART is
                # then on the same images (and charged the smaller batch's worse batching).
                count = art_images[art_iters.index(max(art_iters))]
                variants.append((f"pixel_search (first {count})", {}, count, f"ART max_iter={max(art_iters)}'s images"))
            for label, options, images, note in variants:
                options = {**options, **overrides.get(name, {})}
                runs.append({"name": name, "label": label, "size": size, "options": options, "images": images,
                             "note": note})
    return runs


def run_row(model: nn.Module, run: dict[str, Any], x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, Any]:
    row = {k: run[k] for k in ("name", "label", "size", "options", "note")} | {"attack": run["label"]}
    try:
        attack = get_registry().get("attack", run["name"]).build(**run["options"])
        outcome = evaluate_attack(model, attack, x[: run["images"]], y[: run["images"]], run["size"], seed=seed)
    except (VoldefenseError, ImportError, RuntimeError) as err:
        return row | {"note": f"failed: {type(err).__name__}: {err}"}
    summary = summarize(outcome)
    images = per_image(outcome.clean_correct, outcome.adversarial_correct, outcome.queries)
    stats = success_stats(images)
    return row | stats | {
        "ci95": f"{stats['ci_low']:.2f}-{stats['ci_high']:.2f}",
        "mean_queries": summary.mean_queries,
        "s_per_image": summary.seconds_per_image,
        "images": images,
    }


def comparisons(rows: list[dict[str, Any]], ours: str = "pixel_search") -> list[str]:
    """For each N: `ours` against ART's PixelAttack with the most iterations, on ART's images."""
    lines = []
    for art in [r for r in rows if r["attack"].startswith("pixel (ART") and "images" in r]:
        if any(o["attack"].startswith("pixel (ART") and o["size"] == art["size"] and "images" in o
               and o["options"]["max_iter"] > art["options"]["max_iter"] for o in rows):
            continue
        count = len(art["images"]["flipped"])
        candidates = [r for r in rows if r["name"] == ours and r["size"] == art["size"] and "images" in r]
        mine = next((r for r in candidates if len(r["images"]["flipped"]) == count), None)
        if mine is None:
            continue
        same = success_stats(mine["images"], count)
        ratio = art["s_per_image"] / mine["s_per_image"] if mine["s_per_image"] > 0 else math.inf
        met = same["success_rate"] >= art["success_rate"] and ratio >= 20
        lines.append(
            f"N={art['size']}: {mine['attack']} {same['flipped']}/{same['attacked']} vs {art['attack']} "
            f"{art['flipped']}/{art['attacked']} on the same {count} images; {ratio:.1f}x less time per image "
            f"({mine['s_per_image']:.3g} s vs {art['s_per_image']:.3g} s) -> target "
            f"{'met' if met else 'NOT met'} (success >= ART's at <= 1/20 of its time)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16, help="attacked images (default 16)")
    parser.add_argument("--pixels", default="1,3,10", help="pixel budgets N (default 1,3,10)")
    parser.add_argument("--areas", default="0.05", help="area fractions for patch attacks (default 0.05)")
    parser.add_argument("--attacks", default=DEFAULT_ATTACKS, help=f"attack names (default {DEFAULT_ATTACKS})")
    parser.add_argument("--options", default="", help='JSON per attack: \'{"pixel_search": {"max_queries": 4000}}\'')
    parser.add_argument("--art-max-iter", default="100,10", help="ART PixelAttack max_iter values (default 100,10)")
    parser.add_argument("--art-images", default="", help="images for each --art-max-iter value (default all)")
    parser.add_argument("--cifar", action="store_true", help="real CIFAR-10 from --data-dir instead of toy data")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_CIFAR)
    parser.add_argument("--checkpoint", type=Path, default=None, help="CIFAR model to attack (else train + cache)")
    parser.add_argument("--run", type=Path, default=None,
                        help="attack a model of this `voldefense run` folder (with --cifar) instead of --checkpoint")
    parser.add_argument("--model", default="f", help="which model of --run: f, g or g_<ablation> (default f)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="trained models cache")
    parser.add_argument("--train-seconds", type=float, default=270.0, help="CIFAR training time limit")
    parser.add_argument("--accuracy-images", type=int, default=2000, help="test images for the clean accuracy")
    parser.add_argument("--train-images", type=int, default=2000, help="toy training images")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--classes", type=int, default=4, help="classes of the toy task")
    parser.add_argument("--width", type=int, default=16, help="width of the CNN under attack")
    parser.add_argument("--plot", type=Path, default=None, help="write the success-against-queries plot here")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if (args.checkpoint is not None or args.run is not None) and not args.cifar:
        parser.error("--checkpoint and --run name CIFAR-10 models: add --cifar")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = setup(args)

    model, info, xte, yte = load_data(args, device)
    model = model.to(device).eval()
    xte, yte = xte.to(device), yte.to(device)
    clean_acc = accuracy(model, xte, yte)
    with torch.no_grad():  # warm-up: CUDA context and kernel selection must not be billed to the first attack
        model(xte[:1].expand(256, -1, -1, -1).contiguous())
    described = (f"{info['data']} model ({info.get('source', 'trained here')}), clean accuracy {clean_acc:.3f} on "
                 f"the {len(yte)} attacked images")
    if "clean_accuracy_test" in info:
        described += f", {info['clean_accuracy_test']:.3f} on the first {info['accuracy_images']} test images"
    logger.info("model: %s", described)

    try:  # import ART now, so its import time is not billed to the first ART row
        import art.attacks.evasion  # noqa: F401
    except ImportError:
        pass
    rows = []
    for run in plan(args, xte.shape[1]):
        logger.info("running %s at size %s on %d images %s", run["label"], run["size"], run["images"],
                    run["options"] or "")
        rows.append(run_row(model, run, xte, yte, args.seed))

    print(f"\nmachine: {machine_info(device)}\nmodel: {described}\n")
    print(markdown_table(rows, COLUMNS))
    lines = comparisons(rows)
    print("\n" + "\n".join(lines))
    if args.plot is not None:
        title = f"{info['data']}, clean accuracy {info.get('clean_accuracy_test', clean_acc):.2f}; {len(yte)} images"
        logger.info("plot: %s", plot_success_against_queries(rows, args.plot, title))
    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    write_json(args.json, {"benchmark": "attacks", "command": command, "machine": machine_info(device),
                           "model": info, "clean_accuracy": clean_acc, "images": len(yte), "rows": rows,
                           "comparisons": lines})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
