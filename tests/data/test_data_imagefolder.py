from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from voldefense.data import ImageFolderDataset, load_dataset
from voldefense.errors import ConfigError, DataError


def _png(path: Path, colour: tuple[int, int, int], size=(8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for split, count in (("train", 2), ("test", 1)):
        for k, name in enumerate(["zebra", "ant", "cat"]):
            for i in range(count):
                _png(tmp_path / split / name / f"{i}.png", (k * 100, 10, 20))
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    return tmp_path


def test_classes_sorted_and_items_decoded(tree):
    ds = load_dataset("imagefolder", split="train", root=tree)
    assert isinstance(ds, ImageFolderDataset)
    assert ds.classes == ["ant", "cat", "zebra"] and len(ds) == 6
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    image, label = ds[4]
    assert image.shape == (3, 6, 8) and image.dtype == torch.float32 and label == 2
    assert torch.allclose(image[:, 0, 0], torch.tensor([0, 10, 20]) / 255)  # zebra: colour index 0


def test_resize_keeps_aspect_and_crops_the_centre(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 5:15] = 255  # a white centre band, as wide as the image is tall
    Image.fromarray(img).save(tmp_path / "x.png")
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / split / "a" / "x.jpg", quality=100)
    ds = load_dataset("imagefolder", split="test", root=tmp_path, image_size=4)
    image, _ = ds[0]
    assert image.shape == (3, 4, 4)
    assert float(image.mean()) > 0.9  # only the centre square survives


def test_images_are_read_lazily(tree, monkeypatch):
    opened = []
    original = Image.open
    monkeypatch.setattr(
        Image, "open", lambda path, *a, **k: (opened.append(path), original(path, *a, **k))[1]
    )
    ds = load_dataset("imagefolder", split="train", root=tree)
    assert opened == []
    ds[0]
    assert len(opened) == 1


def test_test_split_uses_train_class_numbering(tmp_path):
    _png(tmp_path / "train" / "a" / "0.png", (0, 0, 0))
    _png(tmp_path / "train" / "b" / "0.png", (0, 0, 0))
    _png(tmp_path / "test" / "b" / "0.png", (0, 0, 0))
    ds = load_dataset("imagefolder", split="test", root=tmp_path)
    assert ds.classes == ["a", "b"] and ds.labels.tolist() == [1]
    _png(tmp_path / "test" / "c" / "0.png", (0, 0, 0))
    with pytest.raises(DataError, match="no counterpart"):
        load_dataset("imagefolder", split="test", root=tmp_path)


def test_corrupt_image_names_the_file(tree):
    bad = tree / "train" / "cat" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = load_dataset("imagefolder", split="train", root=tree)
    ds[0]  # the others still load
    with pytest.raises(DataError, match=r"cat/1\.png: not a readable image"):
        ds[3]


def test_size_mismatch_without_image_size_names_the_file(tree):
    _png(tree / "train" / "zebra" / "big.png", (1, 2, 3), size=(16, 16))
    ds = load_dataset("imagefolder", split="train", root=tree)
    index = [p.name for p, _ in ds.samples].index("big.png")
    with pytest.raises(DataError, match=r"big\.png: image is 16x16.*image_size"):
        ds[index]
    resized = load_dataset("imagefolder", split="train", root=tree, image_size=5)
    assert resized[index][0].shape == (3, 5, 5)


def test_subset_stays_lazy_and_keeps_order(tree):
    ds = load_dataset("imagefolder", split="train", root=tree)
    sub = ds.subset([5, 0])
    assert isinstance(sub, ImageFolderDataset) and sub.labels.tolist() == [2, 0]
    assert torch.equal(sub[0][0], ds[5][0])


def test_dataloader_batches(tree):
    ds = load_dataset("imagefolder", split="train", root=tree, image_size=4)
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=6)))
    assert x.shape == (6, 3, 4, 4) and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("imagefolder", split="train", root=tmp_path / "nope")
    with pytest.raises(DataError, match=r"missing split folder .*train"):
        load_dataset("imagefolder", split="train", root=tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset("imagefolder", split="train", root=tmp_path)
    (tmp_path / "train" / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset("imagefolder", split="train", root=tmp_path)
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("imagefolder", split="train", root=tmp_path, image_size=0)
