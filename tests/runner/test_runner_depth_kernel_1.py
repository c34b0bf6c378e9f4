"""`depth_kernel: 1` through the YAML runner: any 2D classifier as g — a ConvNeXt-style network and a tiny ViT
given by import path (`model.factory`), and the four built-ins — trained, attacked and certified."""

from __future__ import annotations

import json

import pytest
from tiny_quickstart import QUICKSTART

from voldefense.config import load_config
from voldefense.run import run

TINY = [
    "data.options={train_size: 32, test_size: 16}",
    "data.val_size=8",
    "training.models=[g]",
    "training.epochs=1",
    "training.batch_size=16",
    "syllabus.enabled=false",
    "model.depth_kernel=1",
    "model.aggregation=majority_vote",
    "attacks=[{name: patch_pgd, sizes: [0.0625], images: 4, options: {steps: 1}}]",
    "evaluation.convergence_check=false",
    "output.plots=false",
]


def _run_g(backbone, tmp_path, *extra):
    """g of a tiny run: a built-in `backbone` at 1/16 width, or a user's network when it is an import path."""
    model = (
        [f"model.factory={backbone}", "model.options={width: 0.0625}", "model.width=1.0"]
        if ":" in backbone
        else [f"model.backbone={backbone}", "model.options={}", "model.width=0.0625"]
    )
    config = load_config(QUICKSTART, [*TINY, *model, *extra])
    paths = run(config, tmp_path / backbone.replace(":", "_"), device="cpu")
    return json.loads(paths.results.read_text())["models"]["g"]


@pytest.mark.parametrize("factory", ["user_networks:convnext", "user_networks:vit"])
def test_user_networks_run_as_g_and_are_certified(tmp_path, factory):
    g = _run_g(factory, tmp_path)
    (cell,) = g["certified"]
    assert cell["area"] == 0.0625 and 0.0 <= cell["accuracy"] <= 1.0 and cell["images"] > 0


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "inception_v3", "efficientnet_b0"])
def test_builtins_run_as_g_at_depth_kernel_1(fresh_registry, tmp_path, backbone):
    g = _run_g(backbone, tmp_path)
    assert g["certified"][0]["images"] > 0


def test_conv3d_path_is_asked_for_explicitly_and_not_certified(tmp_path, fresh_registry):
    g = _run_g("resnet50", tmp_path, "model.fold=false")
    assert g["certified"] == []
    assert "not provably independent" in g["certified_note"] and "\n" not in g["certified_note"]


def test_checkpoint_digest_changes_only_where_fold_shapes_g():
    from voldefense.run.paths import signature

    def digest(kind, *sets):
        return signature(load_config(QUICKSTART, list(sets)), kind)

    # depth kernel 3: g is the Conv3d network whatever `fold` says; f never depends on it
    assert digest("g", "model.depth_kernel=3", "model.fold=false") == digest("g", "model.depth_kernel=3")
    assert digest("f", "model.depth_kernel=1", "model.fold=false") == digest("f", "model.depth_kernel=1")
    # depth kernel 1: f per patch (2D parameters) and the Conv3d path are different models
    assert digest("g", "model.depth_kernel=1", "model.fold=false") != digest("g", "model.depth_kernel=1")
