"""Images per second of the runner's training loop next to a bare PyTorch loop over the same model and data.

Both loops train the same architecture from the same initial weights on the same uint8 images held on the
device, with random crop (4-pixel reflect padding) + horizontal flip, SGD, batch `--batch`, and on CUDA mixed
precision and channels_last. The runner's loop is `voldefense.training.train` — what `voldefense run` calls —
with its per-epoch bookkeeping, progress bar and checkpoint; the bare loop is the fewest lines that do the same
arithmetic. They alternate (runner, bare, runner, bare, ...) so drift of a shared machine's speed hits both, and
the ratio is taken per pair; the median is reported. Target (issue 12): the runner keeps >= 90% of the bare
loop's throughput.

    OMP_NUM_THREADS=1 python bench/train.py --width 0.125 --images 512 --batch 64 --repeats 3
    python bench/train.py --width 1 --images 20000 --batch 512 --json bench-results/train.json   # GPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find the sibling _common module

from _common import add_common_arguments, machine_info, markdown_table, setup, synchronize, write_json  # noqa: E402

from voldefense.config.schema import OptimizerConfig, ScheduleConfig, TrainingConfig  # noqa: E402
from voldefense.data.arrays import ArrayDataset  # noqa: E402
from voldefense.distributed import DistContext  # noqa: E402
from voldefense.models.defended import DefendedClassifier  # noqa: E402
from voldefense.models.factory import build_model  # noqa: E402
from voldefense.models.losses import CrossEntropyLoss, PatchAggregateLoss  # noqa: E402
from voldefense.training import ShuffleSampler, TrainJob, train  # noqa: E402
from voldefense.volumizer import Volumizer  # noqa: E402

COLUMNS = ["model", "images", "runner_img_s", "bare_img_s", "ratio", "ratio_min", "ratio_max"]


def build(kind: str, args: argparse.Namespace) -> tuple[nn.Module, nn.Module, str]:
    options = dict(width=args.width, stem="small", batch_norm=True, dropout=0.0)
    if kind == "f":
        return build_model(args.backbone, dims=2, num_classes=10, **options), CrossEntropyLoss(), "image"
    g3d = build_model(args.backbone, dims=3, num_classes=10, depth_kernel=args.depth_kernel, num_patches=4, **options)
    return DefendedClassifier(Volumizer(16, metric="mi"), g3d), PatchAggregateLoss(), "patch"


def crop_flip(images: torch.Tensor) -> torch.Tensor:
    """Random 32x32 crop of the 4-pixel reflect-padded batch and a random horizontal flip, per image."""
    b, _, h, w = images.shape
    padded = nn.functional.pad(images, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (b,)).to(images.device), torch.randint(0, 9, (b,)).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, :]
    out = padded.permute(0, 2, 3, 1)[torch.arange(b, device=images.device)[:, None, None], rows, cols]
    out = out.permute(0, 3, 1, 2)
    flip = (torch.rand(b) < 0.5).to(images.device)[:, None, None, None]
    return torch.where(flip, out.flip(-1), out)


def bare_epoch(model: nn.Module, loss_fn: nn.Module, target: str, data: ArrayDataset, args: Any, device) -> float:
    """One epoch of the plainest loop; returns seconds."""
    images, labels = data.images.to(device), data.labels.to(device)
    amp = device.type == "cuda"
    if amp:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    model.train()
    synchronize(device)
    start = time.perf_counter()
    order = torch.randperm(len(labels), device=device)
    for i in range(0, len(order), args.batch):
        index = order[i : i + args.batch]
        x = crop_flip(images[index].float().div_(255.0))
        if amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model.patch_logits(x) if target == "patch" else model(x)
            loss = loss_fn(out.float(), labels[index])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    synchronize(device)
    return time.perf_counter() - start


def runner_epoch(model: nn.Module, loss_fn: nn.Module, target: str, data: ArrayDataset, args: Any, device) -> float:
    """One epoch of `voldefense.training.train` (bookkeeping, progress bar and end-of-run checkpoint included)."""
    config = TrainingConfig(epochs=1, batch_size=args.batch, augment="crop_flip", data_on_device="auto")
    with tempfile.TemporaryDirectory() as folder:
        job = TrainJob(
            "bench", model, loss_fn, target, data, ShuffleSampler(len(data)), Path(folder) / "m.pt", labels=data.labels
        )
        synchronize(device)
        start = time.perf_counter()
        train(
            job,
            config,
            OptimizerConfig(name="sgd", lr=0.01),
            ScheduleConfig(name="constant"),
            device=device,
            amp=device.type == "cuda",
            context=DistContext(),
        )
        synchronize(device)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = add_common_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--depth-kernel", type=int, default=1)
    parser.add_argument("--images", type=int, default=512, help="training images per epoch (random uint8)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="alternating (runner, bare) epoch pairs, after one")
    parser.add_argument("--models", default="f,g", help="f, g or f,g")
    args = parser.parse_args(argv)
    device = setup(args)
    generator = torch.Generator().manual_seed(args.seed)
    data = ArrayDataset(
        torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (args.images,), generator=generator),
        [str(k) for k in range(10)],
    )
    rows = []
    for kind in args.models.split(","):
        torch.manual_seed(args.seed)
        template, loss_fn, target = build(kind, args)
        template = template.to(device)
        ratios, runner_s, bare_s = [], [], []
        for repeat in range(args.repeats + 1):  # pair 0 warms up (allocator, cuDNN autotuning) and is dropped
            a = runner_epoch(copy.deepcopy(template), loss_fn, target, data, args, device)
            b = bare_epoch(copy.deepcopy(template), loss_fn, target, data, args, device)
            if repeat:
                ratios.append(b / a)
                runner_s.append(a)
                bare_s.append(b)
        rows.append(
            {
                "model": f"{kind} ({args.backbone} w{args.width}"
                + (f" dk{args.depth_kernel})" if kind == "g" else ")"),
                "images": args.images,
                "runner_img_s": args.images / statistics.median(runner_s),
                "bare_img_s": args.images / statistics.median(bare_s),
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        )
    print(markdown_table(rows, COLUMNS))
    print("ratio = runner images/s / bare images/s, median over pairs (target >= 0.90)")
    write_json(args.json, {"machine": machine_info(device), "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
