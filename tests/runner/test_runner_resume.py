"""--resume: an interrupted run ends with the same results and weights as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_quickstart import QUICKSTART, tiny_overrides

from voldefense.checkpoint import load_checkpoint
from voldefense.config import load_config
from voldefense.errors import ConfigError
from voldefense.run import run

TINY = [
    *tiny_overrides(train_size=48, test_size=24, val_size=8, epochs=3, batch_size=16),
    "syllabus.pacing_epochs=2",
    "training.augment=crop_flip",
    "optimizer.name=sgd",
    "optimizer.lr=0.05",
    # three of the quickstart's attacks, tiny
    "attacks=[{name: random_pixels, sizes: [1, 4], images: 6}, {name: sparse_pgd, sizes: [2], images: 6, "
    "options: {steps: 2}}, {name: patch_pgd, sizes: [0.04], images: 4, options: {steps: 2}}]",
]
TIMING = {"seconds", "seconds_per_image", "train_seconds", "inference_ms_per_image"}


class Interrupted(Exception):
    pass


def stop_after(model: str, epoch: int):
    def callback(name, done, record):
        if name == model and done == epoch:
            raise Interrupted(f"{name} {done}")

    return callback


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def outputs(root: Path):
    results = without_timing(json.loads((root / "results.json").read_text()))
    metrics = [without_timing(json.loads(line)) for line in (root / "metrics.jsonl").read_text().splitlines()]
    weights = {m: load_checkpoint(root / "checkpoints" / f"{m}.pt")["model"] for m in ("f", "g")}
    return results, metrics, weights


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    run(load_config(QUICKSTART, TINY), root, device="cpu")
    return outputs(root)


def assert_same(a, b):
    assert a[0] == b[0]
    assert a[1] == b[1]
    for model in ("f", "g"):
        for key, tensor in a[2][model].items():
            assert torch.equal(tensor, b[2][model][key]), (model, key)


@pytest.mark.parametrize(("model", "epoch"), [("f", 1), ("g", 2)])
def test_resume_after_an_interruption_gives_identical_results(tmp_path, reference, model, epoch):
    config = load_config(QUICKSTART, TINY)
    with pytest.raises(Interrupted):
        run(config, tmp_path, device="cpu", callbacks=[stop_after(model, epoch)])
    assert not (tmp_path / "results.json").exists()
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["model"] == model and json.loads(rows[-1])["epoch"] == epoch
    with pytest.raises(ConfigError, match="already holds a run"):
        run(config, tmp_path, device="cpu")
    run(config, tmp_path, device="cpu", resume=True)
    assert_same(outputs(tmp_path), reference)


def test_resume_during_evaluation_keeps_finished_rows(tmp_path, reference, monkeypatch):
    config = load_config(QUICKSTART, TINY)
    import voldefense.run.grid as grid

    real = grid.measure_row
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Interrupted("during evaluation")
        return real(*args, **kwargs)

    monkeypatch.setattr(grid, "measure_row", flaky)
    with pytest.raises(Interrupted):
        run(config, tmp_path, device="cpu")
    partial = json.loads((tmp_path / "results.json").read_text())
    assert partial["complete"] is False and len(partial["rows"]) == 3
    monkeypatch.setattr(grid, "measure_row", real)
    run(config, tmp_path, device="cpu", resume=True)
    assert_same(outputs(tmp_path), reference)


def test_resume_refuses_a_changed_config(tmp_path):
    config = load_config(QUICKSTART, [*TINY, "training.models=[f]", "attacks=[]", "training.epochs=1"])
    run(config, tmp_path, device="cpu")
    changed = load_config(QUICKSTART, [*TINY, "training.models=[f]", "attacks=[]", "training.epochs=2"])
    with pytest.raises(ConfigError, match=r"differs from the run's saved config.yaml at training\.epochs"):
        run(changed, tmp_path, device="cpu", resume=True)
    with pytest.raises(ConfigError, match="holds no run"):
        run(config, tmp_path / "empty", device="cpu", resume=True)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, reference):
    """Kill the real command line mid-training with SIGKILL, then resume it."""
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(QUICKSTART.read_text())
    out = tmp_path / "run"
    command = [sys.executable, "-m", "voldefense.cli", "run", str(config_path), "--out", str(out), "--device", "cpu"]
    for item in TINY:
        command += ["--set", item]
    # The same intra-op thread count as the in-process reference run: float reductions split over a different
    # number of threads round differently, and the comparison below is exact.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and '"model": "g"' in metrics.read_text():
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "results.json").exists()
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same(outputs(out), reference)
