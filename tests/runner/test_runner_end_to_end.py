"""The quickstart config at a tiny size, end to end: outputs, report, plots, overwrite protection."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tiny_quickstart import QUICKSTART, tiny_overrides

from voldefense.config import load_config
from voldefense.errors import ConfigError
from voldefense.run import run

TINY = [
    *tiny_overrides(train_size=64, test_size=32, val_size=16, epochs=2, batch_size=32),
    "syllabus.pacing_epochs=1",
    # three of the quickstart's attacks, tiny (the shipped list is for the real run; tests/evaluation has its
    # strength test)
    "attacks=[{name: random_pixels, sizes: [1, 4], images: 8}, {name: sparse_pgd, sizes: [1], images: 8, "
    "options: {steps: 2}}, {name: patch_pgd, sizes: [0.04], images: 6, options: {steps: 2}}]",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    config = load_config(QUICKSTART, TINY)
    paths = run(config, out, device="cpu")
    return config, paths


def test_every_output_is_written(tiny_run):
    _, paths = tiny_run
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "results.json",
        "report.md",
        "checkpoints/f.pt",
        "checkpoints/g.pt",
        "plots/robustness_pixels.png",
        "plots/robustness_area.png",
        "plots/training.png",
    ):
        assert (paths.root / name).is_file(), name


def test_saved_config_is_the_resolved_config_in_its_own_folder(tiny_run):
    config, paths = tiny_run
    saved = load_config(paths.config)
    assert saved.output.dir == str(paths.root) and not saved.output.overwrite
    assert dataclasses.replace(saved, output=config.output) == config


def test_metrics_have_a_row_per_model_and_epoch_with_figure_2_values(tiny_run):
    _, paths = tiny_run
    rows = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    assert [(r["model"], r["epoch"]) for r in rows] == [("f", 1), ("f", 2), ("g", 1), ("g", 2)]
    for row in rows:
        assert row["loss"] > 0 and 0 <= row["val_accuracy"] <= 1 and 0 <= row["train_accuracy"] <= 1
        assert "val_defense_success_rate" in row
    # f is the plain control (all 64 images each epoch); g's curriculum admits half of each class in epoch 1
    images = [r["train_images"] for r in rows]
    assert images[:2] == [64, 64] and 32 <= images[2] <= 36 and images[3] == 64
    g1 = rows[2]
    assert g1["train_fraction"] == images[2] / 64
    # stratified: every class admitted its own simplest half (up to rounding of a handful of images per class)
    assert 0.4 <= g1["train_class_share_min"] <= 0.5 <= g1["train_class_share_max"] <= 0.6
    assert rows[0]["train_class_share_min"] == rows[0]["train_class_share_max"] == 1.0


def test_results_have_every_attack_size_and_model(tiny_run):
    _, paths = tiny_run
    results = json.loads(paths.results.read_text())
    assert results["complete"] is True
    keys = {(r["model"], r["attack"], r["size"]) for r in results["rows"]}
    expected = {(m, "random_pixels", s) for m in "fg" for s in (1, 4)}
    expected |= {(m, "sparse_pgd", 1) for m in "fg"} | {(m, "patch_pgd", 0.04) for m in "fg"}
    assert keys == expected
    for row in results["rows"]:
        assert row["num_images"] == len(row["survived"]) == {"patch_pgd": 6}.get(row["attack"], 8)
        assert all(isinstance(s, bool) for s in row["survived"])
        assert row["robustness_delta"] == pytest.approx(row["attacked_accuracy"] - row["clean_accuracy"])
    worst = {(c["model"], c["size"]): c for c in results["worst_case"]}
    assert worst[("g", 1)]["attacks"] == ["random_pixels", "sparse_pgd"]
    assert (
        worst[("g", 1)]["robust_accuracy"]
        <= min(r["attacked_accuracy"] for r in results["rows"] if r["model"] == "g" and r["size"] == 1) + 1e-9
    )
    assert results["models"]["g"]["details"]["curriculum"] is True
    assert results["models"]["f"]["details"]["curriculum"] is False


def test_report_is_shaped_like_table_2(tiny_run):
    _, paths = tiny_run
    text = paths.report.read_text()
    for heading in ("## Models", "## Worst-case robust accuracy", "## Attack `random_pixels`", "## Attack `patch_pgd`"):
        assert heading in text
    table = text.split("## Attack `random_pixels`")[1].split("##")[0]
    assert "1 px: acc %" in table and "4 px: DSR %" in table
    assert "| **f** |" in table and "| **g** |" in table


def test_an_earlier_run_is_not_overwritten(tiny_run):
    config, paths = tiny_run
    before = paths.results.read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite"):
        run(config, paths.root, device="cpu")
    assert paths.results.read_bytes() == before


def test_overwrite_replaces_only_the_run_outputs(tmp_path):
    config = load_config(QUICKSTART, [*TINY, "training.epochs=1", "attacks=[]", "training.models=[f]"])
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    (tmp_path / "results.json").write_text("{}")
    run(config, tmp_path, device="cpu", overwrite=True)
    assert keep.read_text() == "mine"
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True


def test_the_configured_validation_attack_validates_each_epoch(tmp_path, fresh_registry):
    """training.val_attack names the per-epoch attack (any pixel attack plugin), built with its options."""
    from voldefense.attacks.pixels import RandomPixels
    from voldefense.hookspecs import hookimpl
    from voldefense.specs import AttackSpec

    calls = []

    def spy(copies: int = 5):
        attack = RandomPixels(copies=copies)
        run_attack = attack.run

        def recorded(model, images, labels, size, *, seed=0):
            calls.append((copies, size))
            return run_attack(model, images, labels, size, seed=seed)

        attack.run = recorded
        return attack

    class Spy:
        @hookimpl
        def voldefense_attacks(self):
            yield AttackSpec(name="spy_pixels", factory=spy, description="random pixels, recorded", adaptive=False)

    fresh_registry.register(Spy(), origin="test")
    overrides = [*TINY, "training.epochs=2", "attacks=[]", "training.models=[f]", "training.val_attack=spy_pixels"]
    overrides += ["training.val_attack_options={copies: 2}", "training.val_attack_pixels=3"]
    paths = run(load_config(QUICKSTART, overrides), tmp_path, device="cpu")
    assert calls == [(2, 3), (2, 3)]  # once per epoch, with the configured options and budget
    rows = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    assert all("val_defense_success_rate" in row for row in rows)


def test_a_random_patch_order_is_attacked_with_eot_and_classified_over_draws(tmp_path):
    """The randomized ablation through the runner: an EOT attack aimed at it alone, and `evaluation.draws`
    repeating only its classifications (the deterministic g is classified once)."""
    overrides = [
        *TINY,
        "training.epochs=1",
        "training.models=[g]",
        "model.depth_kernel=3",
        "model.aggregation=mean_logits",
        "ablations=[random_order]",
        "evaluation.draws=3",
        "evaluation.certify=false",
        "attacks=[{name: sparse_pgd, sizes: [1], images: 6, options: {steps: 2}}, {name: sparse_pgd, label: "
        "sparse_pgd_eot, sizes: [1], images: 6, models: [g_random_order], options: {steps: 2, eot_samples: 3}}]",
    ]
    paths = run(load_config(QUICKSTART, overrides), tmp_path, device="cpu")
    rows = {(r["model"], r["attack"]): r for r in json.loads(paths.results.read_text())["rows"]}
    assert set(rows) == {("g", "sparse_pgd"), ("g_random_order", "sparse_pgd"), ("g_random_order", "sparse_pgd_eot")}
    assert rows[("g", "sparse_pgd")]["num_copies"] == 1
    assert rows[("g_random_order", "sparse_pgd")]["num_copies"] == 3
    eot = rows[("g_random_order", "sparse_pgd_eot")]
    total = round(eot["mean_queries"] * 6)  # every step is 3 passes per image, 3 to 9 per image
    assert total % 3 == 0 and 18 <= total <= 54
