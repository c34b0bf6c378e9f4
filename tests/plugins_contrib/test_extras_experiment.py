"""The example experiment of voldefense-extras (examples/extras.yaml) run through `voldefense run` in-process,
with the extras registered as their entry point would register them: a config uses all four plugins by name and
the runner resolves, trains, attacks and reports with them."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from extras_paths import EXTRAS_DIST, EXTRAS_ROOT

from voldefense import cli
from voldefense.config import load_config, read_yaml
from voldefense.errors import ConfigError
from voldefense.registry import Registry

EXAMPLE = EXTRAS_ROOT / "examples" / "extras.yaml"

# The example at a size that runs in about a second on one core; the plugins and their options stay as written.
TINY = [
    "data.options.train_size=64",
    "data.options.test_size=32",
    "data.val_size=16",
    "training.epochs=1",
    "training.batch_size=32",
    "model.width=0.125",
    "attacks.0.images=8",
    "attacks.0.sizes=[1,4]",
    "attacks.0.options.max_queries=20",
    "attacks.1.images=8",
    "attacks.1.sizes=[1]",
    "output.plots=false",
]
MAX_QUERIES = 20


def _overrides() -> list[str]:
    return [arg for item in TINY for arg in ("--set", item)]


@pytest.fixture(scope="module")
def registry():
    import voldefense_extras.plugin

    registry = Registry(load_entry_points=False)
    registry.register(voldefense_extras.plugin, origin=EXTRAS_DIST, name=f"{EXTRAS_DIST}:extras")
    assert not {o: m for o, m in registry.failures.items() if o.startswith(EXTRAS_DIST)}
    return registry


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, registry):
    """`voldefense run examples/extras.yaml --set ...` through the CLI's main, the process-wide registry replaced
    by one holding the extras (what an installed voldefense-extras gives)."""
    out = tmp_path_factory.mktemp("extras") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("voldefense.registry._cached_registry", lambda strict: registry)
        status = cli.main(["run", str(EXAMPLE), "--out", str(out), "--device", "cpu", *_overrides()])
    assert status == 0
    return out


def test_example_validates_as_written(registry):
    config = load_config(EXAMPLE, registry=registry)
    assert config.volumizer.metric == "ssim"
    assert config.model.backbone == "wide_resnet"
    assert config.loss.g == "pal_weighted"
    assert [a.name for a in config.attacks] == ["sparse_rs", "random_pixels"]


def test_example_without_the_extras_names_the_missing_plugin():
    """Not installed, the example fails at validation, before any training, naming the key and the plugin."""
    with pytest.raises(ConfigError, match=r"volumizer\.metric: unknown metric 'ssim'"):
        load_config(EXAMPLE, registry=Registry(load_entry_points=False))


def test_resolved_config_names_the_four_plugins(tiny_run):
    saved = read_yaml(tiny_run / "config.yaml")
    assert saved["volumizer"]["metric"] == "ssim"
    assert saved["volumizer"]["metric_options"] == {"window_size": 5}
    assert saved["model"]["backbone"] == "wide_resnet"
    assert saved["model"]["options"] == {"depth": 10, "widen_factor": 2}
    assert saved["loss"]["g"] == "pal_weighted"
    assert saved["loss"]["g_options"] == {"decay": 0.9}
    assert saved["attacks"][0]["name"] == "sparse_rs"
    assert saved["attacks"][0]["options"] == {"max_queries": MAX_QUERIES}


def test_results_have_sparse_rs_rows_for_f_and_g(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["complete"] is True
    keys = {(r["model"], r["attack"], r["size"]) for r in results["rows"]}
    expected = {(m, "sparse_rs", s) for m in "fg" for s in (1, 4)} | {(m, "random_pixels", 1) for m in "fg"}
    assert keys == expected
    assert results["attacks"]["sparse_rs"]["plugin"] == "sparse_rs"
    assert results["attacks"]["sparse_rs"]["white_box"] is False
    for row in results["rows"]:
        assert row["num_images"] == len(row["survived"]) == 8
    for row in (r for r in results["rows"] if r["attack"] == "sparse_rs"):
        # the option reached the attack: no image spent more than max_queries forward passes
        assert 0 <= row["mean_queries"] <= MAX_QUERIES
        # one attacked copy per image, and an image misclassified clean stays misclassified, so the survivors
        # are exactly the images still correct after the attack
        assert row["num_copies"] == 1
        assert row["attacked_accuracy"] == pytest.approx(sum(row["survived"]) / 8)
        assert row["attacked_accuracy"] <= row["clean_accuracy"]


def test_models_were_built_by_the_extras(tiny_run):
    """The trained models are the extras' components, not look-alikes: g's volume is ranked by SSIM, trained with
    pal_weighted, and f has exactly the parameters of the package's own WRN-10-2 at width 1/8."""
    from voldefense_extras.wide_resnet import wide_resnet

    results = json.loads((tiny_run / "results.json").read_text())
    f, g = results["models"]["f"], results["models"]["g"]
    assert f["details"]["backbone"] == g["details"]["backbone"] == "wide_resnet"
    built = (g["details"]["metric"], g["details"]["loss"], f["details"]["loss"])
    assert built == ("ssim", "pal_weighted", "cross_entropy")
    expected = sum(p.numel() for p in wide_resnet(10, width=0.125, depth=10, widen_factor=2).parameters())
    assert f["parameters"] == expected
    assert g["parameters"] > f["parameters"]  # the 3D kernels of g span 3 slices


def test_built_objects_are_the_extras_components(tiny_run, registry):
    """Resolved once from the injected registry: building the run's models never reaches the process-wide one."""
    from voldefense_extras.losses import PatchWeightedAggregateLoss
    from voldefense_extras.ssim import SSIM

    from voldefense.run.contenders import build_contenders
    from voldefense.run.data import load_data
    from voldefense.run.resolve import resolve

    def unreachable(strict):
        raise AssertionError("the process-wide registry was used although one was injected")

    config = load_config(tiny_run / "config.yaml", registry=registry)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("voldefense.registry._cached_registry", unreachable)
        contenders = build_contenders(resolve(config, registry), load_data(config))
    g = contenders["g"]
    assert isinstance(g.loss, PatchWeightedAggregateLoss) and g.loss.decay == 0.9
    assert g.model.volumizer.metric_spec is registry.get("metric", "ssim")
    assert g.model.volumizer.metric_spec.factory.resolve() is SSIM
    assert registry.origin("metric", "ssim") == EXTRAS_DIST


def test_re_evaluating_sparse_rs_is_deterministic(tiny_run, registry, tmp_path):
    """`voldefense evaluate RUN --attacks sparse_rs` on the saved checkpoints repeats the rows exactly: the
    attack is seeded from the config, so a third-party attack is as reproducible as a built-in one."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)  # the other tests read the original
    before = json.loads((run_dir / "results.json").read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("voldefense.registry._cached_registry", lambda strict: registry)
        status = cli.main(["evaluate", str(run_dir), "--attacks", "sparse_rs", "--device", "cpu"])
    assert status == 0
    after = json.loads((run_dir / "results.json").read_text())

    def rows(results: dict) -> list[dict]:
        return [
            {k: v for k, v in r.items() if k != "seconds_per_image"}
            for r in results["rows"]
            if r["attack"] == "sparse_rs"
        ]

    assert rows(after) == rows(before)


def _subset_mismatches(part: object, whole: object, path: str = "") -> list[str]:
    """Where `part` (a config excerpt) differs from `whole`: mappings may omit keys, everything else is equal."""
    if isinstance(part, dict) and isinstance(whole, dict):
        problems = [f"{path}{k}: not in the example" for k in part if k not in whole]
        return problems + [p for k in part if k in whole for p in _subset_mismatches(part[k], whole[k], f"{path}{k}.")]
    if isinstance(part, list) and isinstance(whole, list) and len(part) == len(whole):
        return [
            p for i, (a, b) in enumerate(zip(part, whole, strict=True)) for p in _subset_mismatches(a, b, f"{path}{i}.")
        ]
    return [] if part == whole else [f"{path.rstrip('.')}: docs say {part!r}, the example {whole!r}"]


def test_the_guide_shows_the_example_as_it_is():
    """docs/plugins.md quotes the plugin-related part of examples/extras.yaml; it must not drift from the file."""
    guide = (EXTRAS_ROOT.parents[1] / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"<!-- config: extras -->\n```yaml\n(.*?)```", guide, re.S)
    assert len(blocks) == 1
    excerpt = yaml.safe_load(blocks[0])
    assert {"volumizer", "model", "loss", "attacks"} <= set(excerpt)
    assert _subset_mismatches(excerpt, yaml.safe_load(EXAMPLE.read_text())) == []


def test_sparse_rs_gets_the_convergence_check_like_a_builtin(tiny_run):
    """The convergence check reads which options scale an attack's budget from its spec
    (`AttackSpec.budget_options`), not from a table of built-in names: at 4 pixels sparse_rs is the only attack,
    so the check reruns it with its declared `max_queries` doubled."""
    results = json.loads((tiny_run / "results.json").read_text())
    checks = {(c["model"], c["size"]): c for c in results["convergence"]}
    for model in "fg":
        check = checks[(model, 4)]
        assert check["attack"] == "sparse_rs"
        assert check["applicable"] is True and check["held"] in (True, False)
        assert check["doubled_options"] == {"max_queries": 2 * MAX_QUERIES}
