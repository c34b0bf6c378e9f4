"""`imagefolder`: ImageNet-style folders, `root/<split>/<class>/<image>`, read lazily one image per item.

Classes are the sorted sub-folder names of `root/train` (of `root/<split>` when there is no train folder), so
train and test agree on label numbers even when a test folder lacks a class. Listing the folders is the only
work done up front; each image is decoded (PIL, converted to RGB) when its item is requested.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from voldefense.data.arrays import check_int, check_path, check_split
from voldefense.data.images import read_image
from voldefense.errors import DataError

logger = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
LAYOUT = "root/<split>/<class>/<image>.png|jpg"


class ImageFolderDataset(Dataset):
    """Images listed in `samples` as `(path, label)`; items `(float32 (3, S, S) in [0, 1], int label)`.

    With `image_size`, the shorter side is resized to `image_size` and the centre square cropped (the aspect
    ratio is kept; the usual ImageNet evaluation transform). Without it every image must already have the size
    of the first one, checked per item.
    """

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: Sequence[str], image_size: int | None):
        self.samples = list(samples)
        self.classes = list(classes)
        self.image_size = image_size
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        self._expected: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = read_image(path)
        if self.image_size is not None:
            image = _resize_center_crop(image, self.image_size)
        else:
            if self._expected is None and index == 0:
                self._expected = image.size  # the reference image itself: no second read
            expected = self._expected_size()
            if image.size != expected:
                raise DataError(
                    f"{path}: image is {image.size[0]}x{image.size[1]} but {self.samples[0][0]} is "
                    f"{expected[0]}x{expected[1]}; set the dataset option image_size to resize them all"
                )
        array = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0), label

    def _expected_size(self) -> tuple[int, int]:
        if self._expected is None:
            self._expected = read_image(self.samples[0][0]).size
        return self._expected

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageFolderDataset:
        """The samples at `indices`, in that order (still lazy)."""
        chosen = [self.samples[int(i)] for i in torch.as_tensor(indices, dtype=torch.long)]
        subset = ImageFolderDataset(chosen, self.classes, self.image_size)
        # Keep the size reference of the full dataset, so a subset checks against the same image.
        subset._expected = self._expected_size() if self.image_size is None and self.samples else None
        return subset

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset({len(self)} images, {len(self.classes)} classes, "
            f"image_size={self.image_size})"
        )


def _resize_center_crop(image, size: int):
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def load_imagefolder(
    split: str, *, root: str | os.PathLike, image_size: int | None = None
) -> ImageFolderDataset:
    """The `split` of the image folder tree under `root` (see the module docstring for the layout)."""
    check_split(split)
    root = check_path("root", root)
    if image_size is not None:
        image_size = check_int("image_size", image_size, minimum=1, maximum=4096)
    if not root.is_dir():
        raise DataError(f"imagefolder root {root} is not a folder; expected the layout {LAYOUT}")
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"imagefolder: missing split folder {folder}; expected the layout {LAYOUT}")
    reference = root / "train" if (root / "train").is_dir() else folder
    classes = _class_folders(reference)
    if not classes:
        raise DataError(f"imagefolder: {reference} has no class sub-folders; expected the layout {LAYOUT}")
    index = {name: k for k, name in enumerate(classes)}
    samples: list[tuple[Path, int]] = []
    for name in _class_folders(folder):
        if name not in index:
            raise DataError(
                f"imagefolder: class folder {folder / name} has no counterpart in {reference}; "
                f"the splits must use the same class names"
            )
        files = sorted(
            e.name
            for e in os.scandir(folder / name)
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(EXTENSIONS)
        )
        samples.extend((folder / name / f, index[name]) for f in files)
    if not samples:
        raise DataError(f"imagefolder: no images ({', '.join(EXTENSIONS)}) under {folder}; expected {LAYOUT}")
    logger.debug("imagefolder %s: %d images, %d classes", folder, len(samples), len(classes))
    return ImageFolderDataset(samples, classes, image_size)
