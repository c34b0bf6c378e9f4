"""Training under torchrun with two CPU processes (gloo): ranks share each epoch, rank 0 writes the outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tiny_quickstart import QUICKSTART, tiny_overrides

TINY = [
    *tiny_overrides(train_size=40, test_size=16, val_size=8, epochs=2, batch_size=8),
    "syllabus.pacing_epochs=1",
    "attacks=[{name: random_pixels, sizes: [1], images: 4}]",
]


@pytest.mark.slow
def test_two_process_gloo_run_writes_one_set_of_outputs(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "voldefense.cli",
        "run",
        str(QUICKSTART),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    for item in TINY:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # one row per model and epoch (rank 0 alone writes); counts are summed over both ranks: f sees all 40 images,
    # g's stratified curriculum admits half of each class in epoch 1 (rounded up per class: 20 to 30 images, split
    # between the ranks)
    assert [(r["model"], r["epoch"]) for r in rows] == [("f", 1), ("f", 2), ("g", 1), ("g", 2)]
    assert [r["train_images"] for r in rows[:2]] == [40, 40] and rows[3]["train_images"] == 40
    assert 20 <= rows[2]["train_images"] <= 30
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and len(results["rows"]) == 2
    assert (out / "report.md").is_file() and (out / "checkpoints" / "g.pt").is_file()
