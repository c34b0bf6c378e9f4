"""`voldefense evaluate RUN_DIR`: re-run the evaluation on saved checkpoints."""

from __future__ import annotations

import json

import pytest
from tiny_quickstart import QUICKSTART, tiny_overrides

from voldefense.cli import main

TINY = [
    *tiny_overrides(train_size=32, test_size=16, val_size=8, epochs=1, batch_size=16),
    "attacks=[{name: random_pixels, sizes: [1, 2], images: 6}, {name: sparse_pgd, sizes: [1], images: 4, "
    "options: {steps: 2}}]",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    argv = ["run", str(QUICKSTART), "--out", str(out), "--device", "cpu"]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    return out


def test_evaluate_reproduces_the_results(run_dir):
    before = json.loads((run_dir / "results.json").read_text())
    (run_dir / "report.md").unlink()
    assert main(["evaluate", str(run_dir), "--device", "cpu"]) == 0
    after = json.loads((run_dir / "results.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds_per_image"} for r in rows]  # noqa: E731
    assert strip(after["rows"]) == strip(before["rows"])
    assert after["worst_case"] == before["worst_case"]
    assert (run_dir / "report.md").is_file()


def test_evaluate_selected_attacks_keeps_the_other_rows(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    for row in results["rows"]:
        if row["attack"] == "random_pixels":
            row["attacked_accuracy"] = -1.0  # a marker: kept rows must come back unchanged
    (run_dir / "results.json").write_text(json.dumps(results))
    assert main(["evaluate", str(run_dir), "--attacks", "sparse_pgd", "--device", "cpu"]) == 0
    after = json.loads((run_dir / "results.json").read_text())
    kept = [r for r in after["rows"] if r["attack"] == "random_pixels"]
    assert len(kept) == 4 and all(r["attacked_accuracy"] == -1.0 for r in kept)
    rerun = [r for r in after["rows"] if r["attack"] == "sparse_pgd"]
    assert len(rerun) == 2 and all(0 <= r["attacked_accuracy"] <= 1 for r in rerun)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--attacks", "pixel"], "--attacks: 'pixel' is not an attack of this run"),
    ],
)
def test_evaluate_errors(run_dir, capsys, args, expected):
    assert main(["evaluate", str(run_dir), *args]) == 2
    assert expected in capsys.readouterr().err


def test_evaluate_needs_a_run_folder_and_intact_checkpoints(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoints").mkdir()
    (copy / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    (copy / "checkpoints" / "f.pt").write_bytes(b"garbage")
    assert main(["evaluate", str(copy), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and "corrupt" in err and err.count("\n") == 1
