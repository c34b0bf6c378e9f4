"""Every shipped experiment attacks each budget with the strongest attacks we have (issue 18): each pixel budget
with an adaptive white-box attack and an adaptive black-box search, the 1-pixel budget also with the exact
`pixel_exhaustive` where the image size allows it, each patch budget with `patch_pgd` searching its location and,
for g, `patch_rank`; and no budget is left to non-adaptive attacks alone (the loader's warning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voldefense.config import load_config, model_names, read_yaml
from voldefense.config.coverage import non_adaptive_budgets
from voldefense.registry import Registry

CONFIGS = Path(__file__).parents[2] / "configs"
SHIPPED = sorted(
    [CONFIGS / "quickstart.yaml", *CONFIGS.glob("compare_cifar10*.yaml"), *CONFIGS.glob("paper/*.yaml")]
    + list(CONFIGS.glob("reproduce/*.yaml"))
)


@pytest.fixture(scope="module")
def registry():
    return Registry(load_entry_points=False)


def _budgets(config, registry):
    """(model, size unit, size) -> [(attack config, spec)] for every budget some attack puts to some model."""
    faced: dict[tuple[str, str, float], list] = {}
    for attack in config.attacks:
        spec = registry.get("attack", attack.name)
        for model in attack.models or model_names(config):
            for size in attack.sizes:
                faced.setdefault((model, spec.size_unit, float(size)), []).append((attack, spec))
    return faced


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_each_budget_faces_the_strongest_attacks(path, registry, tmp_path):
    overrides = []
    if read_yaml(path).get("model", {}).get("weights"):  # a config around trained weights names a file made first
        (tmp_path / "weights.pt").write_bytes(b"")
        overrides.append(f"model.weights={tmp_path / 'weights.pt'}")
    config = load_config(path, overrides, registry=registry)
    assert non_adaptive_budgets(config, registry) == []
    side = int(config.data.options.get("image_size", 32))
    exhaustive_fits = side * side <= registry.get("attack", "pixel_exhaustive").max_image_pixels
    faced = _budgets(config, registry)
    assert faced
    for (model, unit, size), attacks in faced.items():
        where = f"{model} at {unit} {size:g}"
        if unit == "pixels":
            assert any(s.white_box and s.adaptive for _, s in attacks), f"{where}: no white-box attack"
            assert any(not s.white_box and s.budget_options for _, s in attacks), f"{where}: no black-box search"
            if size == 1 and exhaustive_fits and model in ("f", "g"):
                assert any(a.name == "pixel_exhaustive" for a, _ in attacks), f"{where}: no pixel_exhaustive"
        else:
            searched = [a for a, _ in attacks if a.name == "patch_pgd" and a.options.get("location") == "search"]
            assert searched, f"{where}: no patch_pgd with location search"
            if model == "g":
                assert any(a.name == "patch_rank" for a, _ in attacks), f"{where}: no patch_rank"
    if not exhaustive_fits:
        assert not any(a.name == "pixel_exhaustive" for a in config.attacks)
