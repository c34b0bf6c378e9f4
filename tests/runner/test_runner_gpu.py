"""On CUDA: `--device auto` picks the GPU and trains with mixed precision (autocast + GradScaler)."""

from __future__ import annotations

import json

import pytest
from tiny_quickstart import QUICKSTART, tiny_overrides

from voldefense.checkpoint import load_checkpoint
from voldefense.config import load_config
from voldefense.run import run

TINY = [
    *tiny_overrides(train_size=64, test_size=32, val_size=16, epochs=2, batch_size=32),
    "attacks=[{name: random_pixels, sizes: [1], images: 8}, {name: sparse_pgd, sizes: [1], images: 8, "
    "options: {steps: 2}}]",
]


@pytest.mark.gpu
def test_auto_device_trains_on_cuda_with_mixed_precision(tmp_path):
    paths = run(load_config(QUICKSTART, TINY), tmp_path, device="auto")
    for model in ("f", "g"):
        scaler = load_checkpoint(paths.checkpoint(model))["scaler"]
        assert scaler and scaler["scale"] > 0  # an enabled GradScaler saves its scale; a disabled one saves {}
    results = json.loads(paths.results.read_text())
    assert results["complete"] and len(results["rows"]) == 4


@pytest.mark.gpu
def test_amp_off_trains_in_full_precision(tmp_path):
    paths = run(
        load_config(QUICKSTART, [*TINY, "training.amp=false", "attacks=[]", "training.models=[g]"]),
        tmp_path,
        device="cuda",
    )
    assert load_checkpoint(paths.checkpoint("g"))["scaler"] == {}
