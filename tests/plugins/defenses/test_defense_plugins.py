"""Contract tests over every registered defense plugin."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from voldefense.defenses.base import DefendedModel, Defense, TrainBudget
from voldefense.errors import ConfigError
from voldefense.plugins.defenses import MODULES
from voldefense.registry import Registry
from voldefense.testing import make_toy_images, tiny_cnn

REGISTRY = Registry(load_entry_points=False)


def defense_names() -> list[str]:
    """Every registered defense, built-in or installed: the contract applies to all of them."""
    return sorted(REGISTRY.names("defense"))


def test_builtins_are_registered() -> None:
    builtin = {
        "median_filter",
        "derandomized_smoothing",
        "adversarial_training",
        "local_gradient_smoothing",
        "digital_watermarking",
        "patch_cleanser",
    }
    assert set(defense_names()) >= builtin
    assert set(MODULES) == builtin  # one module per defense, named after it


@pytest.mark.parametrize("name", defense_names())
def test_contract(name) -> None:
    defense = REGISTRY.get("defense", name).build()
    assert isinstance(defense, Defense)
    x, y = make_toy_images(64, image_size=16, seed=0)
    f = tiny_cnn(4)
    defended = defense.fit(
        lambda c: tiny_cnn(4, in_channels=c), x, y, TrainBudget(epochs=1, batch_size=32), base_model=f
    )
    assert isinstance(defended, DefendedModel)
    xt = x[:5]
    with torch.no_grad():
        reference = defended.model(xt)
    assert reference.shape == (5, 4) and torch.isfinite(reference).all()
    for view in defended.view_names:
        model = defended.model_for_attack(view)
        with torch.no_grad():
            assert torch.equal(model(xt), reference), f"view {view} has a different forward"
        xg = xt.clone().requires_grad_(True)
        model(xg).logsumexp(1).sum().backward()
        assert xg.grad is not None and torch.isfinite(xg.grad).all()
    certs = defended.certify(xt, y[:5], [1, 3])
    if defended.certifiable:
        assert set(certs) == {1, 3}
        assert all(c.dtype == torch.bool and c.shape == (5,) for c in certs.values())
    else:
        assert certs is None
    assert defended.train_seconds >= 0


@pytest.mark.parametrize("name", defense_names())
def test_unknown_option_is_named(name) -> None:
    with pytest.raises(ConfigError, match="no_such_option"):
        REGISTRY.get("defense", name).build(no_such_option=1)


def test_plugin_modules_do_not_import_art_or_torch() -> None:
    code = (
        "import sys\n"
        "from voldefense.plugins import defenses\n"
        "for m in defenses.MODULES:\n"
        "    mod = __import__('voldefense.plugins.defenses.' + m, fromlist=['x'])\n"
        "    list(mod.voldefense_defenses())\n"
        "assert 'art' not in sys.modules, 'art imported'\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
