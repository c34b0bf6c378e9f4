"""The data of a run: both splits, and the fixed, seeded evaluation subset of the test split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from voldefense.config.schema import Config


@dataclass
class RunData:
    """The datasets and the fixed test tensors of a run."""

    train: Dataset
    test: Dataset
    classes: list[str]
    image_shape: tuple[int, int, int]
    eval_images: torch.Tensor  # float (M, C, H, W) in [0, 1]: a seeded subset of the test split
    eval_labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def first(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `count` evaluation images: every attack and check runs on a prefix of the same order."""
        return self.eval_images[:count], self.eval_labels[:count]

    def probe(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first training images: what `Defense.fit` receives as `images` (it reads their shape; the run's
        trainer streams the whole training set from the dataset, so no float copy of it is ever held)."""
        return dataset_tensors(self.train, torch.arange(min(count, len(self.train))))


def dataset_tensors(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        return images[indices].float().div(255.0), labels[indices].clone()
    items = [dataset[int(i)] for i in indices]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items], dtype=torch.long)


def load_data(config: Config) -> RunData:
    """Load both splits and fix the evaluation subset (the first images of a seeded permutation of the test split:
    the validation rows use its first `data.val_size`, each attack its first `images`)."""
    from voldefense.data import load_dataset

    train = load_dataset(config.data.name, split="train", **config.data.options)
    test = load_dataset(config.data.name, split="test", **config.data.options)
    if config.data.train_subset is not None and config.data.train_subset < len(train):
        generator = torch.Generator().manual_seed(config.training.seed)
        keep = torch.randperm(len(train), generator=generator)[: config.data.train_subset]
        train = _subset(train, keep)
    needed = max([config.data.val_size, *(a.images for a in config.attacks)])
    generator = torch.Generator().manual_seed(config.training.seed + 1)
    indices = torch.randperm(len(test), generator=generator)[: min(needed, len(test))]
    images, labels = dataset_tensors(test, indices)
    classes = list(getattr(train, "classes", [])) or [str(k) for k in range(int(labels.max()) + 1)]
    return RunData(train, test, classes, tuple(images.shape[1:]), images, labels)


def _subset(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    if hasattr(dataset, "subset"):
        return dataset.subset(indices)
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    subset.classes = getattr(dataset, "classes", [])  # type: ignore[attr-defined]
    return subset


def train_images_for_curriculum(dataset: Dataset, num_workers: int = 0) -> Any:
    """The training images for ranking: in-memory datasets hand over their uint8 tensor (no float copy); others
    are streamed in order by a DataLoader, so ImageNet-size sets are never held in memory at once."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images
    return torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=False, num_workers=num_workers)
