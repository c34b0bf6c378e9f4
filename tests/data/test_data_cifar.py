"""CIFAR loading from small files written by the tests in the official format (no real archive needed)."""

import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from voldefense.data import ArrayDataset, load_dataset
from voldefense.data import cifar as cifar_module
from voldefense.data.safe_pickle import load_pickle
from voldefense.errors import ConfigError, DataError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _py2_str(text: bytes) -> bytes:
    # SHORT_BINSTRING / BINSTRING: how Python 2 pickled its `str`, as in the official files.
    if len(text) < 256:
        return b"U" + bytes([len(text)]) + text
    return b"T" + struct.pack("<I", len(text)) + text


def _py2_int(value: int) -> bytes:
    return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)


def _py2_value(value) -> bytes:
    if isinstance(value, bytes):
        return _py2_str(value)
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, list):
        return b"](" + b"".join(_py2_value(v) for v in value) + b"e"
    if isinstance(value, np.ndarray):  # numpy 1.x under Python 2: _reconstruct + BUILD with a byte string
        assert value.dtype == np.uint8 and value.ndim == 2
        shape = _py2_int(value.shape[0]) + _py2_int(value.shape[1]) + b"\x86"
        dtype = b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R" + b"(K\x03" + _py2_str(b"|")
        dtype += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        head = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b") + b"\x87R"
        return head + b"(K\x01" + shape + dtype + b"\x89" + _py2_str(value.tobytes()) + b"tb"
    raise TypeError(type(value))


def py2_pickle(content: dict) -> bytes:
    """A protocol-2 pickle byte for byte as Python 2 + numpy 1 wrote the official CIFAR files."""
    items = b"".join(_py2_str(k.encode()) + _py2_value(v) for k, v in content.items())
    return b"\x80\x02}(" + items + b"u."


def _batch(rng, n: int, label_keys: dict[str, int]) -> dict:
    batch = {"batch_label": b"testing batch", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    for key, k in label_keys.items():
        batch[key] = [int(v) for v in rng.integers(0, k, n)]
    batch["filenames"] = [b"img_%d.png" % i for i in range(n)]
    return batch


def write_cifar10(root: Path, *, n: int = 4, py2: bool = True) -> dict[str, dict]:
    """cifar-10-batches-py/ with 5 train batches and a test batch of `n` images each; returns the batches."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    dump = py2_pickle if py2 else (lambda c: pickle.dumps(c, protocol=2))
    meta = {"num_cases_per_batch": n, "label_names": [c.encode() for c in CIFAR10_NAMES], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(dump(meta))
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = _batch(rng, n, {"labels": 10})
        (folder / name).write_bytes(dump(batches[name]))
    return batches


def write_cifar100(root: Path, *, n: int = 5) -> dict[str, dict]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    meta = {
        "fine_label_names": [b"fine%d" % i for i in range(100)],
        "coarse_label_names": [b"coarse%d" % i for i in range(20)],
    }
    (folder / "meta").write_bytes(py2_pickle(meta))
    batches = {}
    for name in ("train", "test"):
        batches[name] = _batch(rng, n, {"fine_labels": 100, "coarse_labels": 20})
        (folder / name).write_bytes(py2_pickle(batches[name]))
    return batches


def _tar(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


def _image(data_row: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data_row.reshape(3, 32, 32).copy())


def test_py2_pickle_helper_matches_the_real_format():
    # The helper must produce what plain pickle reads (latin1) exactly like the official files.
    arr = np.arange(6, dtype=np.uint8).reshape(1, 6)
    loaded = pickle.loads(py2_pickle({"data": arr, "labels": [1, 300]}), encoding="latin1")
    assert loaded["labels"] == [1, 300] and np.array_equal(loaded["data"], arr)


@pytest.mark.parametrize("py2", [True, False])
def test_cifar10_from_extracted_folder(tmp_path, py2):
    batches = write_cifar10(tmp_path, n=4, py2=py2)
    train = load_dataset("cifar10", split="train", root=str(tmp_path))
    test = load_dataset("cifar10", split="test", root=tmp_path)
    assert isinstance(train, ArrayDataset) and train.classes == CIFAR10_NAMES
    assert train.images.shape == (20, 3, 32, 32) and len(test) == 4
    # Official order: data_batch_1..5 joined; rows are channel-planar RGB.
    expected_labels = sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    assert train.labels.tolist() == expected_labels
    assert torch.equal(train.images[5], _image(batches["data_batch_2"]["data"][1]))
    assert torch.equal(test.images[3], _image(batches["test_batch"]["data"][3]))
    # The red plane comes first: the first 1024 values of a row are channel 0.
    assert torch.equal(test.images[0, 0].flatten(), torch.from_numpy(batches["test_batch"]["data"][0, :1024]))


def test_root_may_be_the_extracted_folder_itself(tmp_path):
    write_cifar10(tmp_path)
    ds = load_dataset("cifar10", split="test", root=tmp_path / "cifar-10-batches-py")
    assert len(ds) == 4


def test_cifar10_from_archive_is_extracted_once(tmp_path):
    source = tmp_path / "src"
    batches = write_cifar10(source)
    root = tmp_path / "root"
    root.mkdir()
    _tar(source / "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
    ds = load_dataset("cifar10", split="test", root=root)
    assert torch.equal(ds.images[1], _image(batches["test_batch"]["data"][1]))
    assert (root / "cifar-10-batches-py" / "batches.meta").is_file()
    assert [p.name for p in root.iterdir() if p.name.startswith(".extract")] == []


def test_cifar100_fine_and_coarse_labels(tmp_path):
    batches = write_cifar100(tmp_path)
    fine = load_dataset("cifar100", split="train", root=tmp_path)
    coarse = load_dataset("cifar100", split="test", root=tmp_path, labels="coarse")
    assert len(fine.classes) == 100 and fine.classes[7] == "fine7"
    assert fine.labels.tolist() == batches["train"]["fine_labels"]
    assert len(coarse.classes) == 20 and coarse.labels.tolist() == batches["test"]["coarse_labels"]
    with pytest.raises(ConfigError, match="fine"):
        load_dataset("cifar100", split="train", root=tmp_path, labels="medium")


def test_missing_data_names_the_archive_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz.*download: true"):
        load_dataset("cifar10", split="train", root=tmp_path)


def test_missing_batch_file_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", split="train", root=tmp_path)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x80\x02}(U\x04data", "corrupt or truncated"),  # truncated
        (b"not a pickle at all", "test_batch"),
        (pickle.dumps([1, 2, 3], protocol=2), "expected a pickled dict"),
        (pickle.dumps({"data": np.zeros((2, 5), np.uint8), "labels": [0, 1]}, protocol=2), "3072"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, protocol=2), "2 integers"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, protocol=2), "outside"),
    ],
)
def test_corrupt_batch_is_one_data_error_naming_the_file(tmp_path, content, match):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(DataError, match=match) as err:
        load_dataset("cifar10", split="test", root=tmp_path)
    assert "test_batch" in str(err.value) and "\n" not in str(err.value)


class _Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvilEval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_raises_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    write_cifar10(tmp_path)
    payload = {"data": _Evil(f"touch {marker}"), "labels": []}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(DataError, match=r"system is not allowed"):
        load_dataset("cifar10", split="test", root=tmp_path)
    assert not marker.exists()


def test_other_dangerous_globals_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    for obj in (_EvilEval(marker), {"x": Path("/etc")}, {"f": np.load}):
        with pytest.raises(DataError, match="not allowed"):
            load_pickle(io.BytesIO(pickle.dumps(obj, protocol=2)), source="evil.pkl")
    # _codecs.encode is allowed for bytes only with text codecs.
    sneaky = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(DataError, match="zlib"):
        load_pickle(io.BytesIO(sneaky), source="evil.pkl")
    assert not marker.exists()


def test_restricted_unpickler_still_reads_python3_numpy_pickles():
    arr = np.arange(3072, dtype=np.int64).astype(np.uint8).reshape(1, 3072)
    for protocol in (2, 4, 5):
        out = load_pickle(io.BytesIO(pickle.dumps({"data": arr, "b": b"xy"}, protocol=protocol)), source="x")
        assert np.array_equal(out["data"], arr) and out["b"] == b"xy"


def _serve(monkeypatch, source: Path, calls: list):
    def fake_fetch(url: str, destination: Path) -> None:
        calls.append(url)
        destination.write_bytes(source.read_bytes())

    monkeypatch.setattr(cifar_module, "_fetch", fake_fetch)


def test_download_verifies_md5_then_extracts(tmp_path, monkeypatch):
    source = tmp_path / "src"
    batches = write_cifar10(source)
    archive = tmp_path / "served.tar.gz"
    _tar(source / "cifar-10-batches-py", archive)
    fmt = cifar_module.CIFAR10
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(cifar_module, "CIFAR10", fmt.__class__(**{**fmt.__dict__, "md5": md5}))
    calls: list[str] = []
    _serve(monkeypatch, archive, calls)
    root = tmp_path / "root"
    ds = load_dataset("cifar10", split="test", root=root, download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert torch.equal(ds.images[0], _image(batches["test_batch"]["data"][0]))
    assert (root / "cifar-10-python.tar.gz").is_file()
    load_dataset("cifar10", split="train", root=root, download=True)
    assert len(calls) == 1  # already there: not fetched again


def test_download_with_wrong_checksum_is_refused_and_removed(tmp_path, monkeypatch):
    source = tmp_path / "src"
    write_cifar10(source)
    archive = tmp_path / "served.tar.gz"
    _tar(source / "cifar-10-batches-py", archive)
    _serve(monkeypatch, archive, [])  # the official MD5 cannot match this tiny archive
    root = tmp_path / "root"
    with pytest.raises(DataError, match="c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", split="train", root=root, download=True)
    assert list(root.iterdir()) == []


def test_download_network_failure_is_a_data_error(tmp_path, monkeypatch):
    def failing_fetch(url: str, destination: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(cifar_module, "_fetch", failing_fetch)
    with pytest.raises(DataError, match="download it by hand"):
        load_dataset("cifar100", split="train", root=tmp_path, download=True)


def test_cifar100_official_constants():
    assert cifar_module.CIFAR100.url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert cifar_module.CIFAR100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"


def _evil_tar(archive: Path, name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    with tarfile.open(archive, "w:gz") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"x"))
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        data = b"owned"
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    "name, kind, link",
    [
        ("../escaped.txt", tarfile.REGTYPE, ""),
        ("cifar-10-batches-py/../../escaped.txt", tarfile.REGTYPE, ""),
        ("/tmp/escaped-absolute.txt", tarfile.REGTYPE, ""),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc/passwd"),
        ("cifar-10-batches-py/hard", tarfile.LNKTYPE, "/etc/passwd"),
        ("somewhere-else/file", tarfile.REGTYPE, ""),
    ],
)
def test_unsafe_archive_entries_are_refused(tmp_path, name, kind, link):
    root = tmp_path / "root"
    root.mkdir()
    _evil_tar(root / "cifar-10-python.tar.gz", name, kind, link)
    with pytest.raises(DataError, match="unsafe"):
        load_dataset("cifar10", split="train", root=root)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "cifar-10-batches-py").exists()
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]


def test_corrupt_archive_is_named(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz: corrupt"):
        load_dataset("cifar10", split="train", root=tmp_path)


def test_half_extracted_folder_is_reported(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="delete that folder"):
        load_dataset("cifar10", split="train", root=tmp_path)


def test_option_types_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="download"):
        load_dataset("cifar10", split="train", root=tmp_path, download="yes")
    with pytest.raises(ConfigError, match="root"):
        load_dataset("cifar10", split="train", root=3)
