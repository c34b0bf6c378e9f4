"""`cifar10` and `cifar100` from the official python archives (https://www.cs.toronto.edu/~kriz/cifar.html).

Under `root`, either the extracted folder (`cifar-10-batches-py/`, `cifar-100-python/`), `root` being that
folder itself, or the archive (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`), which is extracted next
to it on first use. `download=True` fetches the archive from the official URL when neither is there and checks
its MD5 before anything reads it. Batches are pickles and are read with `RestrictedUnpickler`, never plain
`pickle`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voldefense.data.arrays import ArrayDataset, check_bool, check_path, check_split
from voldefense.data.safe_pickle import load_pickle
from voldefense.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CifarFormat:
    name: str
    folder: str
    archive: str
    url: str
    md5: str
    files: dict[str, tuple[str, ...]]  # split -> batch files inside `folder`
    meta: str


CIFAR10 = CifarFormat(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    meta="batches.meta",
)
CIFAR100 = CifarFormat(
    name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    files={"train": ("train",), "test": ("test",)},
    meta="meta",
)


def load_cifar10(split: str, *, root: str | os.PathLike, download: bool = False) -> ArrayDataset:
    """The CIFAR-10 `split` (50,000 train / 10,000 test images, 10 classes) from `root`."""
    check_split(split)
    folder = locate(CIFAR10, check_path("root", root), download=check_bool("download", download))
    return _load(CIFAR10, folder, split, label_key="labels", names_key="label_names")


def load_cifar100(
    split: str, *, root: str | os.PathLike, download: bool = False, labels: str = "fine"
) -> ArrayDataset:
    """The CIFAR-100 `split` from `root`; `labels="fine"` (100 classes) or `"coarse"` (20 superclasses)."""
    check_split(split)
    if labels not in ("fine", "coarse"):
        raise ConfigError(f"dataset option labels must be 'fine' or 'coarse', got {labels!r}")
    folder = locate(CIFAR100, check_path("root", root), download=check_bool("download", download))
    return _load(CIFAR100, folder, split, label_key=f"{labels}_labels", names_key=f"{labels}_label_names")


def locate(fmt: CifarFormat, root: Path, *, download: bool) -> Path:
    """The folder with `fmt`'s extracted files, extracting (and if asked downloading) the archive first."""
    for candidate in (root / fmt.folder, root):
        if (candidate / fmt.meta).is_file():
            return candidate
    if (root / fmt.folder).exists():
        raise DataError(
            f"{fmt.name}: {root / fmt.folder} exists but has no {fmt.meta} (incomplete extraction?); "
            f"delete that folder so the archive can be extracted again"
        )
    archive = root / fmt.archive
    if not archive.is_file():
        if not download:
            raise DataError(
                f"{fmt.name}: neither {root / fmt.folder}/ nor {archive} exists; put the official archive "
                f"({fmt.url}) there or set the dataset option download: true"
            )
        download_archive(fmt, archive)
    extract_archive(archive, root, fmt.folder)
    return root / fmt.folder


def _fetch(url: str, destination: Path) -> None:
    """Copy `url` to `destination` (the one place that touches the network; tests replace it)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:  # noqa: S310
        shutil.copyfileobj(response, out, length=1 << 20)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_archive(fmt: CifarFormat, archive: Path) -> None:
    """Download `fmt`'s official archive to `archive`; it only appears there once its MD5 matches."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".part")
    logger.info("downloading %s to %s", fmt.url, archive)
    try:
        _fetch(fmt.url, partial)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{fmt.name}: could not download {fmt.url} ({err}); download it by hand to {archive}"
        ) from None
    actual = _md5(partial)
    if actual != fmt.md5:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{fmt.name}: downloaded {fmt.url} has MD5 {actual}, expected {fmt.md5} (corrupt or tampered "
            f"download, deleted); retry, or download it by hand to {archive}"
        )
    os.replace(partial, archive)


def extract_archive(archive: Path, root: Path, folder: str) -> None:
    """Extract `folder/` from `archive` into `root`, refusing links, devices and paths outside `folder/`.

    Extracts into a temporary folder first and moves the result into place, so an interrupted extraction never
    leaves a half-filled folder that the next run would take for a complete one.
    """
    logger.info("extracting %s", archive)
    fix = f"delete {archive} and download the official archive again"
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                name = member.name
                parts = Path(name).parts
                inside = parts and parts[0] == folder and ".." not in parts and not Path(name).is_absolute()
                if not inside or not (member.isfile() or member.isdir()):
                    raise DataError(
                        f"{archive}: unexpected or unsafe entry {name!r} (not a file under {folder}/); {fix}"
                    )
            # The data filter (Python >= 3.12, backported to 3.10.12/3.11.4) re-checks what we just checked.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **extra)
        if not (staging / folder).is_dir():
            raise DataError(f"{archive}: does not contain {folder}/; {fix}")
        os.replace(staging / folder, root / folder)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(
            f"{archive}: corrupt or unreadable archive ({type(err).__name__}: {err}); {fix}"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read(path: Path, fmt: CifarFormat) -> dict[str, Any]:
    fix = f"delete {path.parent} and extract the official {fmt.name} archive ({fmt.url}) again"
    if not path.is_file():
        raise DataError(f"{fmt.name}: missing file {path}; {fix}")
    with open(path, "rb") as stream:
        content = load_pickle(stream, source=path)
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(content).__name__}; {fix}")
    # Python 2 wrote str keys; depending on how a file was re-pickled they may come back as bytes.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _load(fmt: CifarFormat, folder: Path, split: str, *, label_key: str, names_key: str) -> ArrayDataset:
    meta = _read(folder / fmt.meta, fmt)
    names = meta.get(names_key)
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(
            f"{folder / fmt.meta}: no list of class names under {names_key!r}; the file is not "
            f"the official {fmt.name} meta file"
        )
    classes = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    images, labels = [], []
    for file in fmt.files[split]:
        path = folder / file
        batch = _read(path, fmt)
        data, batch_labels = batch.get("data"), batch.get(label_key)
        if not (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32
        ):
            raise DataError(
                f"{path}: 'data' is not a uint8 array of shape (N, 3072); the file is not an official "
                f"{fmt.name} batch"
            )
        if not (
            isinstance(batch_labels, list)
            and len(batch_labels) == data.shape[0]
            and all(isinstance(v, int) and not isinstance(v, bool) for v in batch_labels)
        ):
            raise DataError(
                f"{path}: {label_key!r} is not a list of {data.shape[0]} integers; the file is not an "
                f"official {fmt.name} batch"
            )
        if batch_labels and not 0 <= min(batch_labels) <= max(batch_labels) < len(classes):
            raise DataError(
                f"{path}: labels outside [0, {len(classes) - 1}] for the {len(classes)} classes of "
                f"{folder / fmt.meta}"
            )
        # Rows are channel-planar (1024 red, 1024 green, 1024 blue values, each row-major): already C, H, W.
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    return ArrayDataset(
        torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), classes
    )
