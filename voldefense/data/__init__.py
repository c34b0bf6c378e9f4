"""Datasets: the built-in `synthetic` default, `cifar10` / `cifar100`, `npz` and `imagefolder`
(docs/datasets.md).

`load_dataset(name, split=..., **options)` returns a torch `Dataset` with `.classes` whose items are
`(float32 image (C, H, W) in [0, 1], int label)`.
"""

from __future__ import annotations

from voldefense.data.arrays import ArrayDataset
from voldefense.data.catalog import (
    DATASETS,
    DEFAULT_DATASET,
    REQUIRED,
    DatasetInfo,
    check_options,
    dataset_info,
    dataset_options,
    list_datasets,
    load_dataset,
)
from voldefense.data.imagefolder import ImageFolderDataset

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "REQUIRED",
    "ArrayDataset",
    "DatasetInfo",
    "ImageFolderDataset",
    "check_options",
    "dataset_info",
    "dataset_options",
    "list_datasets",
    "load_dataset",
]
