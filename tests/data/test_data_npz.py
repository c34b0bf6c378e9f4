import numpy as np
import pytest
import torch

from voldefense.data import ArrayDataset, load_dataset
from voldefense.errors import ConfigError, DataError


def _write(path, n=6, *, h=5, w=4, c=3, labels=None, **extra):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    y = np.arange(n) % 3 if labels is None else labels
    np.savez(path, x=x, y=y, **extra)
    return x, y


def test_loads_nhwc_as_nchw_with_split_placeholder(tmp_path):
    x, y = _write(tmp_path / "train.npz")
    _write(tmp_path / "test.npz", n=2)
    ds = load_dataset("npz", split="train", path=str(tmp_path / "{split}.npz"))
    assert isinstance(ds, ArrayDataset) and ds.images.shape == (6, 3, 5, 4)
    assert torch.equal(ds.images[2], torch.from_numpy(x[2].transpose(2, 0, 1).copy()))
    assert ds.labels.tolist() == y.tolist() and ds.classes == ["0", "1", "2"]
    assert len(load_dataset("npz", split="test", path=tmp_path / "{split}.npz")) == 2


def test_train_and_test_paths_and_class_options(tmp_path):
    _write(tmp_path / "a.npz")
    _write(tmp_path / "b.npz", n=2, labels=np.array([0, 0]))
    test = load_dataset("npz", split="test", train_path=tmp_path / "a.npz", test_path=tmp_path / "b.npz")
    assert len(test) == 2 and test.classes == ["0"]  # inferred from the labels present
    test = load_dataset("npz", split="test", test_path=tmp_path / "b.npz", num_classes=3)
    assert test.classes == ["0", "1", "2"]
    named = load_dataset("npz", split="train", train_path=tmp_path / "a.npz", classes=["cat", "dog", "emu"])
    assert named.classes == ["cat", "dog", "emu"]
    with pytest.raises(DataError, match="out of range for 2 classes"):
        load_dataset("npz", split="train", train_path=tmp_path / "a.npz", classes=["cat", "dog"])
    with pytest.raises(ConfigError, match="list of class names"):
        load_dataset("npz", split="train", train_path=tmp_path / "a.npz", classes="cat")


def test_class_names_stored_in_the_file_and_grey_images(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "g.npz", x=rng.integers(0, 256, (4, 6, 6), dtype=np.uint8), y=np.array([0, 1, 1, 0]),
             classes=np.array(["yes", "no"]))  # fmt: skip
    ds = load_dataset("npz", split="train", train_path=tmp_path / "g.npz")
    assert ds.classes == ["yes", "no"] and ds.images.shape == (4, 1, 6, 6)


def test_path_without_placeholder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\{split\}"):
        load_dataset("npz", split="train", path=tmp_path / "all.npz")
    with pytest.raises(ConfigError, match="train_path"):
        load_dataset("npz", split="train", test_path=tmp_path / "b.npz")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"train\.npz does not exist"):
        load_dataset("npz", split="train", path=tmp_path / "{split}.npz")


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((2, 4, 4, 3), np.float32), "y": np.zeros(2, np.int64)}, "uint8.*float32"),
        ({"x": np.zeros((2, 3, 4, 4), np.uint8), "y": np.zeros(2, np.int64)}, "NCHW"),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.zeros(3, np.int64)}, r"shape \(2,\)"),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.zeros(2, np.float32)}, "integer"),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0, -1])}, "negative"),
        ({"images": np.zeros((2, 4, 4, 3), np.uint8)}, r"needs arrays 'x'.*\['images'\]"),
        (
            {"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.zeros(2, np.int64), "classes": np.zeros(2)},
            "strings",
        ),
    ],
)
def test_bad_arrays_give_one_clear_error(tmp_path, arrays, match):
    np.savez(tmp_path / "train.npz", **arrays)
    with pytest.raises(DataError, match=match) as err:
        load_dataset("npz", split="train", path=tmp_path / "{split}.npz")
    assert "train.npz" in str(err.value)


def test_corrupt_file_is_named(tmp_path):
    (tmp_path / "train.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match=r"train\.npz: not a readable"):
        load_dataset("npz", split="train", path=tmp_path / "{split}.npz")


def test_pickled_object_arrays_are_not_loaded(tmp_path):
    np.savez(tmp_path / "train.npz", x=np.array([object()] * 2, dtype=object), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="train.npz"):
        load_dataset("npz", split="train", path=tmp_path / "{split}.npz")
