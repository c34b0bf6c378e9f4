"""`voldefense run`: config mistakes are one line and a non-zero exit before training; a tiny run succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tiny_quickstart import QUICKSTART, tiny_overrides

from voldefense.cli import main

TINY = [
    *tiny_overrides(train_size=32, test_size=16, val_size=8, epochs=1, batch_size=16),
    "attacks=[{name: random_pixels, sizes: [1], images: 4}]",
]


def cli(*args):
    argv = ["run", str(QUICKSTART)]
    for item in TINY:
        argv += ["--set", item]
    return main([*argv, *args])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainig.epochs=1", "trainig: unknown key; did you mean 'training'?"),
        ("training.epochs=ten", "training.epochs: invalid value 'ten'; allowed: an integer >= 1"),
        ("optimizer.lr=-1", "optimizer.lr: invalid value -1; allowed: a number > 0.0"),
        ("model.backbone=resnet", "model.backbone: unknown backbone 'resnet'"),
        ("attacks.0.options={steps: 3}", "attacks[0].options.steps: attack 'random_pixels' does not accept"),
        ("data.options.size=3", "data.options.size: dataset 'synthetic' does not accept this option"),
        ("volumizer.order=upwards", "volumizer.order: invalid value 'upwards'; allowed: 'ascending'"),
        # Non-finite numbers pass every comparison-based range check (NaN > 0 is False, so is NaN < 0): refused
        # by name, each in one line naming the key and what is allowed.
        ("optimizer.lr=.nan", "optimizer.lr: nan is not a finite number (NaN and infinity are refused); allowed: a"),
        ("optimizer.lr=.inf", "optimizer.lr: inf is not a finite number"),
        ("optimizer.weight_decay=.nan", "optimizer.weight_decay: nan is not a finite number"),
        ("attacks.0.sizes=[.nan]", "attacks[0].sizes[0]: nan is not a finite number"),
        ("model.width=.inf", "model.width: inf is not a finite number (NaN and infinity are refused); allowed: a"),
        ("syllabus.start_fraction=-.inf", "syllabus.start_fraction: -inf is not a finite number"),
        ("attacks.0.options={copies: .nan}", "attacks[0].options.copies: nan is not a finite number"),
        ("data.options={noise: [0.1, .inf]}", "data.options.noise[1]: inf is not a finite number"),
    ],
)
def test_config_errors_are_one_line_before_training(tmp_path, capsys, override, expected):
    assert cli("--out", str(tmp_path / "run"), "--set", override) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"voldefense run: error: {expected}"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_no_traceback_from_the_real_executable(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: 0\n")
    done = subprocess.run(
        [sys.executable, "-m", "voldefense.cli", "run", str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == ("voldefense run: error: training.epochs: invalid value 0; allowed: an integer >= 1")


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "config file" in capsys.readouterr().err


def test_tiny_run_then_refuse_then_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("--out", str(out), "--device", "cpu") == 0
    results = json.loads((out / "results.json").read_text())
    assert {(r["model"], r["attack"]) for r in results["rows"]} == {("f", "random_pixels"), ("g", "random_pixels")}
    assert cli("--out", str(out), "--device", "cpu") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert cli("--out", str(out), "--device", "cpu", "--overwrite") == 0


def test_output_dir_defaults_to_the_config_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "mine.yaml"
    config.write_text(QUICKSTART.read_text().replace("  dir: runs/quickstart\n", ""))
    argv = ["run", str(config), "--device", "cpu"]
    for item in TINY:
        argv += ["--set", item]
    assert main([*argv, "--set", "training.models=[f]"]) == 0
    assert (tmp_path / "runs" / "mine" / "report.md").is_file()


def test_a_diverging_run_stops_in_one_line_naming_model_epoch_and_step(tmp_path, capsys):
    # lr 1e30 is finite, so the config accepts it; the loss is NaN by the second step.
    assert cli("--out", str(tmp_path / "run"), "--device", "cpu", "--set", "optimizer.lr=1.0e+30") == 2
    err = capsys.readouterr().err
    assert err.startswith("voldefense run: error: training f stopped: the loss is nan at epoch 1, step 2 of 2"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "results.json").exists()


def test_every_file_of_a_run_honours_the_umask(tmp_path):
    """report.md, results.json, config.yaml and the checkpoints get 0644 under umask 022, like the plots and
    metrics.jsonl (they were 0600: written through mkstemp, which ignores the umask)."""
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert cli("--out", str(out), "--device", "cpu", "--set", "training.models=[f]") == 0
    finally:
        os.umask(old)
    files = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert {"report.md", "results.json", "config.yaml", "metrics.jsonl", "checkpoints/f.pt"} <= set(files)
    assert any(name.endswith(".png") for name in files)
    assert files == dict.fromkeys(files, 0o644)


def _strict_json(text: str):
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_every_json_file_of_a_run_is_strict_json(tmp_path):
    """An undefined figure is written as null, never as the non-JSON tokens NaN/Infinity. Here: one validation
    and one attacked image, which the 1-epoch model gets wrong, so the defense success rates (among correctly
    classified images) are 0/0; the plots and the report read them back from the files."""
    out = tmp_path / "run"
    single = ["data.val_size=1", "attacks.0.images=1", "training.models=[f]", "evaluation.certify=false"]
    assert cli("--out", str(out), "--device", "cpu", *[a for s in single for a in ("--set", s)]) == 0
    metrics = [_strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    results = _strict_json((out / "results.json").read_text())
    assert metrics[-1]["val_accuracy"] == 0.0 and metrics[-1]["val_defense_success_rate"] is None
    assert results["rows"][0]["defense_success_rate"] is None
    assert (out / "plots" / "training.png").is_file() and "| **f** |" in (out / "report.md").read_text()


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_replaces_only_the_folder_of_this_command(tmp_path, monkeypatch, caplog):
    """Issue 13.1: run A into runs/a (its config's output.dir), run B with --out runs/b, then rerun B's saved
    config with --overwrite: only runs/b is replaced, and the log says so; a copied run folder is its own."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "a.yaml"
    config.write_text(QUICKSTART.read_text().replace("dir: runs/quickstart", "dir: runs/a"))
    sets = [a for item in [*TINY, "training.models=[f]"] for a in ("--set", item)]
    assert main(["run", str(config), *sets, "--device", "cpu"]) == 0
    a = _snapshot(tmp_path / "runs" / "a")
    assert main(["run", str(config), *sets, "--out", "runs/b", "--device", "cpu"]) == 0
    saved = (tmp_path / "runs" / "b" / "config.yaml").read_text()
    assert "dir: runs/b" in saved and "overwrite: false" in saved  # the saved config points at its own folder
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(["run", "runs/b/config.yaml", "--overwrite", "--device", "cpu"]) == 0
    assert _snapshot(tmp_path / "runs" / "a") == a
    assert f"replacing the run in {tmp_path / 'runs' / 'b'}" in caplog.text
    import shutil

    shutil.copytree(tmp_path / "runs" / "b", tmp_path / "runs" / "c")
    b = _snapshot(tmp_path / "runs" / "b")
    assert main(["run", "runs/c/config.yaml", "--overwrite", "--device", "cpu"]) == 0
    assert _snapshot(tmp_path / "runs" / "b") == b and _snapshot(tmp_path / "runs" / "a") == a
    assert "dir: runs/c" in (tmp_path / "runs" / "c" / "config.yaml").read_text()


def test_a_run_that_stopped_before_training_is_reused(tmp_path, capsys, caplog):
    """Issue 13.2: a run that failed after validation (here: a missing dataset file) leaves only config.yaml;
    the fixed rerun reuses the folder without --overwrite and says so in one line."""
    out = tmp_path / "run"
    missing = ["--set", "data.name=npz", "--set", f"data.options={{path: '{tmp_path}/none/{{split}}.npz'}}"]
    assert cli("--out", str(out), "--device", "cpu", *missing) == 2
    assert "none" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["config.yaml"]
    with caplog.at_level("INFO"):
        assert cli("--out", str(out), "--device", "cpu", "--set", "training.models=[f]") == 0
    assert (out / "results.json").is_file()
    assert (
        sum("reusing" in r.getMessage() and "no trained model and no results" in r.getMessage() for r in caplog.records)
        == 1
    )
