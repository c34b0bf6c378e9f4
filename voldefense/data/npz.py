"""`npz`: images and labels from numpy `.npz` files, one file per split.

Each file holds `x`, uint8 `(N, H, W, C)` with C = 1 or 3 (or `(N, H, W)` for grey images), and `y`, integer
`(N,)`; optionally `classes`, a string array of class names. Files are read with `allow_pickle=False`: an
`.npz` cannot run code.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from voldefense.data.arrays import ArrayDataset, check_int, check_path, check_split
from voldefense.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def load_npz(
    split: str,
    *,
    path: str | os.PathLike | None = None,
    train_path: str | os.PathLike | None = None,
    test_path: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> ArrayDataset:
    """The `split` from `train_path` / `test_path`, or from `path` with `{split}` replaced by the split name.

    Class names come from the `classes` option, else `num_classes` (named "0".."K-1"), else the file's
    `classes` array, else the largest label + 1 (which undercounts when a split lacks the last class: give
    `num_classes` or `classes` in that case).
    """
    check_split(split)
    file = _resolve(split, path=path, train_path=train_path, test_path=test_path)
    x, y, file_classes = _read(file)
    if classes is not None:
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes) or not classes:
            raise ConfigError(f"dataset option classes must be a list of class names, got {classes!r}")
        names = list(classes)
    elif num_classes is not None:
        names = [str(k) for k in range(check_int("num_classes", num_classes, minimum=1))]
    elif file_classes is not None:
        names = file_classes
    else:
        names = [str(k) for k in range(int(y.max()) + 1 if y.size else 1)]
    if y.size and int(y.max()) >= len(names):
        raise DataError(
            f"{file}: label {int(y.max())} is out of range for {len(names)} classes; fix the labels or the "
            f"classes / num_classes option"
        )
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return ArrayDataset(images, torch.from_numpy(y.astype(np.int64)), names)


def _resolve(split: str, *, path: object, train_path: object, test_path: object) -> Path:
    specific = train_path if split == "train" else test_path
    if specific is not None:
        return check_path(f"{split}_path", specific)
    if path is None:
        raise ConfigError(
            f"dataset npz needs a file for the {split} split: "
            f"set path (containing '{{split}}') or {split}_path"
        )
    template = str(check_path("path", path))
    if "{split}" not in template:
        # One file for both splits would silently test on the training data.
        raise ConfigError(
            f"dataset option path {template!r} must contain '{{split}}' (e.g. data/{{split}}.npz); "
            f"or set train_path and test_path"
        )
    return Path(template.replace("{split}", split))


def _read(file: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    if not file.is_file():
        raise DataError(f"npz file {file} does not exist; check the dataset path options")
    try:
        with np.load(file, allow_pickle=False) as archive:
            keys = set(archive.files)
            if not {"x", "y"} <= keys:
                raise DataError(
                    f"{file}: needs arrays 'x' (uint8 NHWC images) and 'y' (labels), "
                    f"found {sorted(keys) or 'none'}; save with np.savez(path, x=images, y=labels)"
                )
            x, y = archive["x"], archive["y"]
            names = archive["classes"] if "classes" in keys else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(
            f"{file}: not a readable .npz file ({type(err).__name__}: {err}); write it again"
        ) from None
    if x.dtype != np.uint8:
        raise DataError(
            f"{file}: x must be uint8 (0-255), found {x.dtype}; convert with "
            f"np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) if it holds floats in [0, 1]"
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        hint = (
            " (it looks like NCHW: transpose with x.transpose(0, 2, 3, 1))"
            if (x.ndim == 4 and x.shape[1] in (1, 3))
            else ""
        )
        raise DataError(f"{file}: x must have shape (N, H, W, C) with C = 1 or 3, found {x.shape}{hint}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{file}: y must have shape ({x.shape[0]},) to match x, found {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{file}: y must hold integer class indices, found {y.dtype}")
    if y.size and int(y.min()) < 0:
        raise DataError(f"{file}: y holds negative label {int(y.min())}; labels must be 0..K-1")
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(
                f"{file}: 'classes' must be a 1-D array of strings, found {names.dtype} {names.shape}"
            )
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    return x, y, names
