"""Your own model through the YAML runner: model.factory, model.weights, training.g_init, and the defended model
of a finished run as an ART classifier attacked by an ART attack voldefense does not wrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from voldefense.config import load_config
from voldefense.errors import ConfigError
from voldefense.run import run
from voldefense.run.contenders import build_contenders
from voldefense.run.data import load_data
from voldefense.run.resolve import resolve
from voldefense.run.warm_start import prepare_own_models

REPO = Path(__file__).parents[2]


def _config(tmp_path: Path, name: str = "own", **sections) -> Path:
    raw = {
        "data": {"name": "synthetic", "options": {"train_size": 48, "test_size": 16}, "val_size": 8},
        "volumizer": {"patch": 16, "metric": "entropy"},
        "syllabus": {"enabled": False},
        "model": {"factory": "voldefense.testing:tiny_cnn", "options": {"width": 4}, "depth_kernel": 3},
        "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
        "training": {"epochs": 1, "batch_size": 16, "eval_batch_size": 16},
        "attacks": [{"name": "random_pixels", "sizes": [1], "images": 4}],
        "evaluation": {"convergence_check": False},
        "output": {"plots": False},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A user's model trained as f (and g from scratch), then a second run: f from run 1's weights, g inflated
    from it and fine-tuned."""
    tmp = tmp_path_factory.mktemp("own")
    first = run(load_config(_config(tmp, "first")), tmp / "first", device="cpu")
    weights = first.root / "checkpoints" / "f.pt"
    config = load_config(_config(tmp, "second", model={"weights": str(weights)}, training={"g_init": "f"}))
    second = run(config, tmp / "second", device="cpu")
    return first, second


def test_f_is_loaded_not_retrained_and_g_is_inflated_from_it(trained_run):
    first, second = trained_run
    rows = [json.loads(line) for line in second.metrics.read_text().splitlines()]
    assert [r["model"] for r in rows] == ["g"]  # f came from the weights file: no training epochs
    f_first = torch.load(first.root / "checkpoints" / "f.pt", weights_only=True)["model"]
    f_second = torch.load(second.root / "checkpoints" / "f.pt", weights_only=True)["model"]
    assert all(torch.equal(f_first[k], f_second[k]) for k in f_first)
    results = json.loads(second.results.read_text())
    models = results["models"]
    assert "weights from" in models["f"]["description"] and "by inflation" in models["g"]["description"]
    report = second.report.read_text()
    assert "voldefense.testing:tiny_cnn" in report


def test_load_classifier_gives_an_art_estimator_any_art_attack_can_use(trained_run):
    from art.attacks.evasion import SquareAttack  # voldefense does not wrap it

    import voldefense

    _, second = trained_run
    classifier = voldefense.load_classifier(second.root, model="g", device="cpu")
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    adversarial = SquareAttack(classifier, norm=np.inf, eps=0.1, max_iter=3, nb_restarts=1, verbose=False).generate(x)
    assert adversarial.shape == x.shape and np.abs(adversarial - x).max() <= 0.1 + 1e-6
    assert classifier.predict(adversarial).shape == (3, 10)  # the synthetic dataset's classes
    # the very pipeline the run evaluated: same logits as the run's own g
    g = voldefense.load_model(second.root, "g")
    with torch.no_grad():
        assert np.allclose(classifier.predict(x), g(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_load_classifier_names_the_models_of_the_run(trained_run, tmp_path):
    import voldefense

    _, second = trained_run
    with pytest.raises(ConfigError, match=r"'h' is not a model of the run .* \(models: f, g\)"):
        voldefense.load_model(second.root, "h")
    with pytest.raises(ConfigError, match="not a run folder"):
        voldefense.load_model(tmp_path, "g")


@pytest.mark.parametrize("depth_kernel", [1, 3])  # 1: g is Patchwise(f), no conversion; 3: the Conv3d network
def test_g_init_from_a_weights_file_makes_g_start_as_f_on_each_patch(tmp_path, depth_kernel):
    from voldefense.testing import perturb_weights, tiny_cnn

    f = perturb_weights(tiny_cnn(10, width=4))
    torch.save(f.state_dict(), tmp_path / "f.pt")
    model = {"depth_kernel": depth_kernel}
    training = {"models": ["g"], "g_init": str(tmp_path / "f.pt")}
    config = load_config(_config(tmp_path, model=model, training=training))
    data = load_data(config)
    plans = build_contenders(resolve(config), data)
    prepare_own_models(plans, config, data.image_shape, data.num_classes)
    g = plans["g"].model.eval()
    images = data.eval_images[:3]
    volume, _ = g.volumizer.volumize(images)
    with torch.no_grad():
        per_patch = torch.stack([f.eval()(volume[:, :, n]) for n in range(volume.shape[2])], dim=1)
        assert torch.allclose(g.patch_logits(images), per_patch, atol=1e-5)


# -- one clear line before any training ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, message",
    [
        ({"factory": "no_such_package.models:net"}, "module 'no_such_package.models' cannot be found"),
        ({"factory": "voldefense.testing:no_such_net"}, "'voldefense.testing' has no attribute 'no_such_net'"),
        ({"factory": "voldefense.testing"}, "allowed: an import path 'package.module:function'"),
        ({"options": {"depth": 3}}, r"model.options.depth: voldefense.testing:tiny_cnn does not accept"),
        ({"width": 0.5}, "model.width: applies to the registered backbones"),
        ({"options": {"num_classes": 3}}, "model.options.num_classes: set from the dataset"),
        ({"weights": "missing.pt"}, "model.weights: no file at 'missing.pt'"),
    ],
)
def test_config_mistakes_are_one_line_at_load(tmp_path, model, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(_config(tmp_path, model=model))
    assert "\n" not in str(err.value)


def test_g_init_needs_f_first_and_an_existing_file(tmp_path):
    with pytest.raises(ConfigError, match="list f before g"):
        load_config(_config(tmp_path, training={"models": ["g", "f"], "g_init": "f"}))
    with pytest.raises(ConfigError, match="training.g_init: invalid value 'nope.pt'"):
        load_config(_config(tmp_path, training={"g_init": "nope.pt"}))


def _fails_before_training(tmp_path: Path, config_path: Path, message: str) -> None:
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    with pytest.raises(ConfigError, match=message) as err:
        run(load_config(config_path), out, device="cpu")
    assert "\n" not in str(err.value)
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()


def test_weights_that_do_not_fit_are_named_before_training(tmp_path):
    from voldefense.testing import tiny_cnn

    state = tiny_cnn(10, width=8).state_dict()  # the config builds width 4
    state["extra.weight"] = torch.zeros(1)
    del state["0.bias"]
    torch.save(state, tmp_path / "f.pt")
    path = _config(tmp_path, model={"weights": str(tmp_path / "f.pt")})
    message = r"missing: 0.bias; unexpected: extra.weight; shape mismatch: 0.weight \(8, 3, 3, 3\) vs model \(4,"
    _fails_before_training(tmp_path, path, message)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    _fails_before_training(
        tmp_path, _config(tmp_path, model={"weights": str(tmp_path / "junk.pt")}), "weights_only=True"
    )


def test_a_factory_that_returns_no_module_or_wrong_logits_is_named_before_training(tmp_path, monkeypatch):
    path = _config(tmp_path, model={"factory": "voldefense.testing:make_toy_images", "options": {"n": 2}})
    _fails_before_training(tmp_path, path, r"returned a tuple, not a torch.nn.Module")
    (tmp_path / "seven.py").write_text(
        "from voldefense.testing import tiny_cnn\n\ndef net():\n    return tiny_cnn(7)\n"
    )
    monkeypatch.chdir(tmp_path)
    path = _config(tmp_path, model={"factory": "seven:net", "options": {}})
    _fails_before_training(tmp_path, path, r"must return logits \(B, 10\) for this dataset's 10 classes, got \(1, 7\)")


def test_a_forward_that_only_works_on_images_is_named_before_training(tmp_path, monkeypatch):
    module = tmp_path / "flat_model.py"
    module.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3, padding=1)\n"
        "        self.fc = nn.Linear(4, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1))\n"
    )
    monkeypatch.chdir(tmp_path)  # imported from the current folder, as the voldefense command does
    path = _config(tmp_path, model={"factory": "flat_model:Net", "options": {}})
    _fails_before_training(tmp_path, path, r"g \(your model converted to 3D\) fails on a volume .*model.depth_kernel 1")
