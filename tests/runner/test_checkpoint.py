"""Atomic checkpoints, safe loading and one-line errors for corrupt or mismatched files."""

from __future__ import annotations

import contextlib
import os
import random
import stat

import numpy as np
import pytest
import torch
from torch import nn

from voldefense.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from voldefense.errors import CheckpointError


def test_roundtrip_keeps_tensors_and_plain_values(tmp_path):
    path = tmp_path / "c.pt"
    model = nn.Linear(3, 2)
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 4, "history": [{"loss": 0.5}]})
    state = load_checkpoint(path)
    assert state["epoch"] == 4 and state["history"] == [{"loss": 0.5}]
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("voldefense.checkpoint.os.replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_atomic_text_replaces_whole_file(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_text(path, "long old content")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    """Like any other file (a plot, metrics.jsonl): 0666 minus the umask, also when replacing an older file."""
    with umask(mask):
        atomic_write_text(tmp_path / "report.md", "old")
        atomic_write_text(tmp_path / "report.md", "new")
        save_checkpoint(tmp_path / "g.pt", {"epoch": 1})
        (tmp_path / "plain.txt").write_text("a file written the ordinary way")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["report.md", "g.pt", "plain.txt"], 0o666 & ~mask)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", b"PK\x03\x04garbage-zip"],
)
def test_corrupt_files_are_one_line_checkpoint_errors(tmp_path, content):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": nn.Linear(30, 20).state_dict()})
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="corrupt or not a voldefense checkpoint"):
        load_checkpoint(path)


def test_foreign_and_missing_files(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a voldefense checkpoint of format"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_weights_are_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_weights(nn.Linear(3, 2), nn.Linear(4, 2).state_dict(), path=tmp_path / "c.pt")
    assert "does not match the configured model" in str(info.value) and "\n" not in str(info.value)


def test_rng_state_roundtrip_through_a_safe_checkpoint(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(load_checkpoint(path)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
