"""The dataset catalog: names, their accepted options, and `load_dataset`.

The config layer validates a `data` section with `DATASETS` / `dataset_options` before anything is loaded;
the runner then calls `load_dataset(name, split=..., **options)`. Options are the keyword-only parameters
of each loader, read from its signature, so the catalog cannot drift from what a loader really accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from voldefense.data.arrays import check_split
from voldefense.data.cifar import load_cifar10, load_cifar100
from voldefense.data.imagefolder import load_imagefolder
from voldefense.data.npz import load_npz
from voldefense.data.synthetic import load_synthetic
from voldefense.errors import ConfigError, UnknownPluginError

REQUIRED = inspect.Parameter.empty
"""The default recorded in `DatasetInfo.options` for an option that has none (the user must give it)."""


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: `loader(split, **options)` and a one-line description."""

    name: str
    loader: Callable[..., Dataset]
    description: str

    @property
    def options(self) -> dict[str, Any]:
        """Option name -> default value (`REQUIRED` when the option must be given)."""
        params = inspect.signature(self.loader).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    @property
    def required(self) -> set[str]:
        return {name for name, default in self.options.items() if default is REQUIRED}


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "synthetic", load_synthetic, "built-in offline default: 10 shape/texture classes, 32x32 RGB"
        ),
        DatasetInfo(
            "cifar10", load_cifar10, "CIFAR-10 from the official python archive or folder under root"
        ),
        DatasetInfo(
            "cifar100", load_cifar100, "CIFAR-100 from the official python archive or folder under root"
        ),
        DatasetInfo("npz", load_npz, "arrays x (uint8 NHWC) and y (labels) in one .npz file per split"),
        DatasetInfo("imagefolder", load_imagefolder, "ImageNet-style root/<split>/<class>/<image> folders"),
    )
}

DEFAULT_DATASET = "synthetic"


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry for `name`; an unknown name raises `UnknownPluginError` listing the names."""
    info = DATASETS.get(name) if isinstance(name, str) else None
    if info is None:
        raise UnknownPluginError("dataset", str(name), DATASETS)
    return info


def list_datasets() -> list[str]:
    """The dataset names `load_dataset` accepts, sorted."""
    return sorted(DATASETS)


def dataset_options(name: str) -> set[str]:
    """The option names dataset `name` accepts (besides `split`)."""
    return set(dataset_info(name).options)


def check_options(name: str, options: dict[str, Any]) -> None:
    """Raise `ConfigError` for options `name` does not accept or required ones missing; loads nothing."""
    info = dataset_info(name)
    accepted = info.options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"accepted options: {', '.join(sorted(accepted)) or 'none'}"
        )
    missing = sorted(info.required - set(options))
    if missing:
        raise ConfigError(f"dataset {name!r} needs option(s) {', '.join(missing)}")


def load_dataset(name: str, *, split: str, **options: Any) -> Dataset:
    """Load the `split` ("train" or "test") of dataset `name` with `options` (see docs/datasets.md).

    The result has `.classes`; array-backed datasets (synthetic, cifar10, cifar100, npz) are `ArrayDataset`s.
    """
    check_split(split)
    check_options(name, options)
    return dataset_info(name).loader(split, **options)
