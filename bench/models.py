"""Training-step and inference time of f (2D) vs g (3D) for every built-in backbone, at CIFAR scale.

For each backbone: one forward+backward+optimizer step on a batch of 32x32 images for f, and on their volumes
(4 patches of 16x16) for g with depth_kernel 3 and depth_kernel 1 (f run on the patches folded into the batch,
and the converted Conv3d network, `fold=False`, for comparison); then inference time of the volumizer alone vs
the whole defended classifier g (volumizer + 3D backbone + aggregation). Targets (issue 3): volumizer < 10% of
g's inference, g's training step <= 3x f's at depth_kernel 3.

    OMP_NUM_THREADS=1 python bench/models.py --width 0.125 --batch 16
    python bench/models.py --width 0.5 --batch 128 --json bench-results/models.json   # GPU when present
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find the sibling _common module

from _common import add_common_arguments, machine_info, markdown_table, setup, timed, write_json  # noqa: E402

from voldefense.models.defended import DefendedClassifier  # noqa: E402
from voldefense.models.factory import build_model  # noqa: E402
from voldefense.models.losses import CrossEntropyLoss, PatchAggregateLoss  # noqa: E402
from voldefense.volumizer import Volumizer  # noqa: E402

BACKBONES = ("vgg16", "resnet50", "inception_v3", "efficientnet_b0")
COLUMNS = [
    "backbone",
    "f_train_ms",
    "g3_train_ms",
    "g3/f",
    "g1_fold_train_ms",
    "g1_conv3d_train_ms",
    "volumizer_ms",
    "g_infer_ms",
    "volumizer_share",
]


def median_time(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[1] for _ in range(repeats))


def train_step(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, loss_fn
) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), labels).backward()
        optimizer.step()

    return step


def bench_backbone(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    size, patch = 32, 16
    images = torch.rand(args.batch, 3, size, size, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    volumizer = Volumizer(patch, metric=args.metric).to(device)
    volumes = volumizer(images).detach()
    ms = 1000.0
    t = dict(device=device, repeats=args.repeats, warmup=args.warmup)

    f = build_model(name, dims=2, num_classes=10, width=args.width).to(device)
    row: dict[str, Any] = {"backbone": name}
    row["f_train_ms"] = ms * median_time(train_step(f, images, labels, CrossEntropyLoss()), **t)
    g3 = build_model(name, dims=3, num_classes=10, width=args.width, depth_kernel=3).to(device)
    row["g3_train_ms"] = ms * median_time(train_step(g3, volumes, labels, PatchAggregateLoss()), **t)
    row["g3/f"] = row["g3_train_ms"] / row["f_train_ms"]
    g1 = build_model(name, dims=3, num_classes=10, width=args.width, depth_kernel=1).to(device)  # f per patch
    row["g1_fold_train_ms"] = ms * median_time(train_step(g1, volumes, labels, PatchAggregateLoss()), **t)
    g1 = build_model(name, dims=3, num_classes=10, width=args.width, depth_kernel=1, fold=False).to(device)
    row["g1_conv3d_train_ms"] = ms * median_time(train_step(g1, volumes, labels, PatchAggregateLoss()), **t)

    g = DefendedClassifier(volumizer, g3).to(device).eval()
    with torch.no_grad():
        row["volumizer_ms"] = ms * median_time(lambda: volumizer(images), **t)
        row["g_infer_ms"] = ms * median_time(lambda: g(images), **t)
    row["volumizer_share"] = row["volumizer_ms"] / row["g_infer_ms"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = add_common_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--width", type=float, default=0.25, help="channel multiplier of every backbone")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--metric", default="mi", help="the volumizer's ranking metric")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    args = parser.parse_args(argv)
    device = setup(args)
    rows = [bench_backbone(name, args, device) for name in args.backbones]
    print(markdown_table(rows, COLUMNS))
    print(
        f"\nwidth {args.width}, batch {args.batch}, 32x32 images, 16x16 patches (N=4), median of "
        f"{args.repeats}; train = forward + backward + SGD step; targets: g3/f <= 3, volumizer_share < 0.10"
    )
    write_json(args.json, {"machine": machine_info(device), "arguments": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
