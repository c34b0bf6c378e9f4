"""Split CIFAR-10's train.npz into parts small enough to carry to a device machine, and join them back.

A lent device machine receives at most 64 MiB per call and the CIFAR-10 training set is 141 MB as npz, so a
GPU session carries the parts in successive calls to a warm machine (files outside the working tree's tracked
set persist between calls) and `bench/reproduce_gpu.sh` joins them before the run.

    python bench/cifar_parts.py split SRC_DIR DEST_DIR [--parts 3]   # train_part0.npz ... + test.npz copy
    python bench/cifar_parts.py join DIR                              # DIR/train_part*.npz -> DIR/train.npz
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np


def split(src: Path, dest: Path, parts: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with np.load(src / "train.npz") as data:
        x, y = data["x"], data["y"]
    for k, (xs, ys) in enumerate(zip(np.array_split(x, parts), np.array_split(y, parts), strict=True)):
        np.savez_compressed(dest / f"train_part{k}.npz", x=xs, y=ys)
        print(f"{dest / f'train_part{k}.npz'}: {len(ys)} images")
    shutil.copyfile(src / "test.npz", dest / "test.npz")


def join(folder: Path) -> None:
    parts = sorted(folder.glob("train_part*.npz"), key=lambda p: int(p.stem.removeprefix("train_part")))
    if not parts:
        raise SystemExit(f"no train_part*.npz in {folder}")
    xs, ys = [], []
    for part in parts:
        with np.load(part) as data:
            xs.append(data["x"])
            ys.append(data["y"])
    np.savez(folder / "train.npz", x=np.concatenate(xs), y=np.concatenate(ys))
    print(f"{folder / 'train.npz'}: {sum(len(y) for y in ys)} images from {len(parts)} parts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split")
    s.add_argument("src", type=Path)
    s.add_argument("dest", type=Path)
    s.add_argument("--parts", type=int, default=3)
    j = sub.add_parser("join")
    j.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "split":
        split(args.src, args.dest, args.parts)
    else:
        join(args.folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
