"""Where g's clean accuracy goes: the accuracy of each patch's vote alone (by its rank in the volume) next to the
aggregated prediction, for a trained g of a `voldefense run` on CIFAR-10 test images.

    python bench/patch_votes.py RUN_DIR [--data-dir ../shared/data/cifar10] [--images 10000] [--model g]

A g that runs f on each patch (depth kernel 1) votes with per-patch classifiers, so this separates what one patch
can tell (the information a patch holds) from what the aggregation recovers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find the sibling modules

from _cifar_model import load_split  # noqa: E402

from voldefense.errors import VoldefenseError  # noqa: E402
from voldefense.loading import load_model  # noqa: E402

DEFAULT_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"


def patch_vote_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500):
    """(per-patch accuracy by rank (N,), aggregated accuracy) over `images` (B, C, H, W) in [0, 1]."""
    right, aggregated = None, 0
    with torch.no_grad():
        for lo in range(0, len(labels), batch):
            x, y = images[lo : lo + batch], labels[lo : lo + batch]
            votes = model.patch_logits(x).argmax(-1) == y[:, None]  # (B, N)
            right = votes.sum(0) if right is None else right + votes.sum(0)
            aggregated += int((model(x).argmax(1) == y).sum())
    return right.double() / len(labels), aggregated / len(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="folder of a `voldefense run` on CIFAR-10")
    parser.add_argument("--model", default="g", help="g or g_<ablation> (default g)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_CIFAR)
    parser.add_argument("--images", type=int, default=10000, help="first test images (default 10,000)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        model = load_model(args.run, args.model)
    except VoldefenseError as err:
        raise SystemExit(f"{args.run}: {err}") from None
    if not hasattr(model, "patch_logits"):
        raise SystemExit(f"{args.model} of {args.run} has no per-patch votes (is it f?)")
    x, y = load_split(args.data_dir, "test", args.images)
    per_patch, aggregated = patch_vote_accuracy(model, x.float() / 255.0, y)
    ranks = ", ".join(f"{100 * float(a):.1f}" for a in per_patch)
    print(f"{args.run} {args.model}, {len(y)} test images")
    print(f"per-patch accuracy by rank: {ranks} (mean {100 * float(per_patch.mean()):.1f}%)")
    print(f"aggregated ({getattr(model, 'aggregation', '?')}): {100 * aggregated:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
