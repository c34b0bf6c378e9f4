"""LGS, DW and PatchCleanser as report rows of a tiny run: views, certified cells per patch area, forward
passes in the inference column, and PatchCleanser refusing an uncertifiable mask set before f is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voldefense.config import load_config
from voldefense.errors import ConfigError
from voldefense.report import main_table
from voldefense.results import read_results
from voldefense.run import run

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
TINY = [
    "data.options={train_size: 48, test_size: 16, image_size: 16}",
    "data.val_size=8",
    "training.epochs=1",
    "training.batch_size=16",
    "training.models=[f]",
    "ablations=[]",
    "model.backbone=resnet50",
    "model.options={}",
    "model.width=0.0625",
    "evaluation.certify=true",
    "evaluation.certify_areas=[0.0625, 0.25]",
    "evaluation.convergence_check=false",
    "attacks=[{name: patch_pgd, sizes: [0.0625], images: 4, options: {steps: 2}}]",
]
DEFENSES = (
    "defenses=[{name: local_gradient_smoothing, options: {window: 4, overlap: 1}}, {name: digital_watermarking}, "
    "{name: patch_cleanser, label: pc_6pct, options: {patch_area: 0.0625, masks_per_axis: 3, "
    "train_on_masked: true}}, {name: patch_cleanser, label: pc_25pct, options: {patch_area: 0.25, "
    "masks_per_axis: 2}}]"
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("patch_defenses")
    run(load_config(QUICKSTART, [*TINY, DEFENSES]), out, device="cpu")
    return json.loads((out / "results.json").read_text()), read_results(out / "results.json")


def test_rows_views_and_certificates(results):
    results, _ = results
    models = {name: {**entry, **entry.pop("details")} for name, entry in results["models"].items()}
    assert list(models) == ["f", "local_gradient_smoothing", "digital_watermarking", "pc_6pct", "pc_25pct"]
    assert models["local_gradient_smoothing"]["views"] == models["digital_watermarking"]["views"] == ["naive", "bpda"]
    assert models["local_gradient_smoothing"]["epochs"] == 0  # in front of the run's f
    pc = models["pc_6pct"]
    assert pc["views"] == ["soft_masks"] and pc["epochs"] == 1  # trained on masked images, f's budget
    assert [c["area"] for c in pc["certified"]] == [0.0625]  # a 4-px mask set certifies no 8-px square: left out
    assert 0 <= pc["certified"][0]["accuracy"] <= pc["clean_accuracy"]
    assert pc["forward_passes_per_image"] >= pc["info"]["masks"] == 9
    # The 25% set (8-px patch, 2 masks per axis: stride 5, masks of 12 px) certifies both areas; f reused.
    assert [c["area"] for c in models["pc_25pct"]["certified"]] == [0.0625, 0.25]
    assert models["pc_25pct"]["epochs"] == 0
    assert models["pc_25pct"]["info"]["mask_size"] == [12, 12]
    for name in ("local_gradient_smoothing", "digital_watermarking"):
        assert "no certificate" in models[name]["certified_note"]
    rows = {(r["model"], r["attack"]) for r in results["rows"]}
    assert {(m, "patch_pgd") for m in models} <= rows


def test_report_shows_passes_and_a_dash_where_not_certified(results):
    table = main_table(results[1])
    pc_row = next(line for line in table if line.startswith("| **pc_6pct**"))
    cells = [c.strip() for c in pc_row.strip("|").split("|")]
    assert cells[-1].endswith("passes)")  # inference ms/img (N passes)
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert cells[header.index("certified 25% area (8 px) %")] == "—"


def test_uncertifiable_mask_set_is_refused_before_training(tmp_path):
    bad = "defenses=[{name: patch_cleanser, options: {patch_area: 0.0625, mask_size: 4, mask_stride: 3}}]"
    with pytest.raises(ConfigError, match=r"defenses\[0\] \(patch_cleanser\): patch_cleanser: .*mask_size >= 6"):
        run(load_config(QUICKSTART, [*TINY, bad]), tmp_path / "run", device="cpu")
    assert not list((tmp_path / "run").rglob("*.pt"))  # nothing was trained
