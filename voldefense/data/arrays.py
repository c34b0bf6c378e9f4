"""`ArrayDataset`: images held in memory as one uint8 tensor, and the option checks every loader shares."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from voldefense.errors import ConfigError, DataError

SPLITS = ("train", "test")


class ArrayDataset(Dataset):
    """An in-memory image classification dataset.

    `images` is a uint8 tensor `(N, C, H, W)` (kept as uint8: a quarter of the memory of float32, and exact);
    `labels` an int64 tensor `(N,)` with values in `range(len(classes))`. Items are
    `(float32 image (C, H, W) in [0, 1], int label)`, the layout of docs/architecture.md.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(
                f"images must be a uint8 tensor (N, C, H, W), got "
                f"{getattr(images, 'dtype', type(images).__name__)} "
                f"of shape {tuple(getattr(images, 'shape', ()))}"
            )
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype != torch.int64:
            raise DataError(
                f"labels must be an int64 tensor (N,), got {getattr(labels, 'dtype', type(labels).__name__)} "
                f"of shape {tuple(getattr(labels, 'shape', ()))}"
            )
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{images.shape[0]} images but {labels.shape[0]} labels; they must match one to one"
            )
        classes = [str(c) for c in classes]
        if not classes:
            raise DataError("a dataset needs at least one class name")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise DataError(
                f"labels must lie in [0, {len(classes) - 1}] for {len(classes)} classes, "
                f"found [{int(labels.min())}, {int(labels.max())}]"
            )
        self.images = images
        self.labels = labels
        self.classes = classes

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ArrayDataset:
        """The samples at `indices`, in that order, as a new `ArrayDataset` (a copy, not a view)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return ArrayDataset(self.images[index], self.labels[index], self.classes)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All samples at once: float32 images `(N, C, H, W)` in [0, 1] and int64 labels `(N,)`."""
        return self.images.float().div_(255.0), self.labels.clone()

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"ArrayDataset({n} images {c}x{h}x{w}, {len(self.classes)} classes)"


def check_split(split: Any) -> str:
    if split not in SPLITS:
        raise ConfigError(f"dataset split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def check_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """An integer option in [minimum, maximum]; bools are refused (YAML `yes` is not a size)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"dataset option {name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(f"dataset option {name} must be at least {minimum}{upper}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"dataset option {name} must be true or false, got {value!r}")
    return value


def check_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"dataset option {name} must be a non-empty path or string, got {value!r}")
    return value


def check_path(name: str, value: Any) -> Path:
    """A path option: a non-empty string or `os.PathLike`, with `~` expanded."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value):
        return Path(value).expanduser()
    raise ConfigError(f"dataset option {name} must be a file or folder path, got {value!r}")
