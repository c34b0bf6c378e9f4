"""Training batches without per-image Python work: in-memory uint8 sets held on the device, plus labels.

A `DataLoader` over an in-memory dataset calls ``__getitem__`` once per image and collates in Python — on a GPU
that, not the model, bounds a small network's throughput. `DeviceBatches` instead moves the uint8 image tensor
to the device once and serves each batch as one index gather and one ``float() / 255``; augmentation then runs
on the whole batch on the device (`voldefense.training.augment`). The batches are the very values the
DataLoader path gives (same sampler order, same float conversion), so results and resume are unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

logger = logging.getLogger(__name__)


def in_memory_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The dataset's uint8 images `(M, C, H, W)` and int64 labels `(M,)` when it holds them in memory, else None."""
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return None
    if images.dtype != torch.uint8 or images.dim() != 4 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        return None
    return images, labels.long()


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """One int64 class index per sample: read from the dataset's `labels` / `targets` where it has them (also
    through a `torch.utils.data.Subset`), otherwise by iterating the dataset once."""
    for name in ("labels", "targets"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    inner = getattr(dataset, "dataset", None)
    indices = getattr(dataset, "indices", None)
    if inner is not None and indices is not None:
        return dataset_labels(inner)[torch.as_tensor(list(indices), dtype=torch.long)]
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)  # type: ignore[arg-type]


class DeviceBatches:
    """Batches `(float images in [0, 1], labels)` gathered on `device` from uint8 tensors held there.

    Iterating draws the sampler's current epoch order once (call its `set_epoch` first, as with a DataLoader).
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, sampler: Sampler[int], batch_size: int, device: torch.device
    ):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.device = device

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.long).to(self.device)
        for start in range(0, order.numel(), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index].float().div_(255.0), self.labels[index]


def batches(
    dataset: Dataset,
    sampler: Sampler[int],
    *,
    batch_size: int,
    device: torch.device,
    on_device: bool | str,
    num_workers: int = 0,
) -> Any:
    """The training batches of one model: `DeviceBatches` when `on_device` (True, or "auto" and the dataset is an
    in-memory uint8 set), else a `DataLoader` with the same sampler and batch size."""
    tensors = in_memory_tensors(dataset) if on_device in (True, "auto") else None
    if tensors is not None:
        return DeviceBatches(*tensors, sampler, batch_size, device)
    if on_device is True:
        logger.warning(
            "training.data_on_device: the training set (%s) is not an in-memory uint8 tensor set; using a "
            "DataLoader",
            type(dataset).__name__,
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
