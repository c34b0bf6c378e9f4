"""voldefense-extras as a plugin package: what it registers, its entry-point declaration, a fake installed
distribution found through `importlib.metadata`, cheap listing, and option checking through the factories."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from extras_paths import EXTRAS_DIST, EXTRAS_ROOT, EXTRAS_SRC

from voldefense import cli
from voldefense.errors import ConfigError
from voldefense.registry import Registry, reset_registry

EXPECTED = {
    ("metric", "ssim"),
    ("backbone", "wide_resnet"),
    ("loss", "pal_weighted"),
    ("attack", "sparse_rs"),
}


def _fake_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """An installed-looking distribution: a .dist-info with METADATA and entry_points.txt under `root`."""
    info = root / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[voldefense]\n{lines}")


def test_registers_one_plugin_of_each_kind(extras_registry):
    ours = {(e.kind, e.name) for e in extras_registry.entries() if e.origin == EXTRAS_DIST}
    assert ours == EXPECTED
    for kind, name in EXPECTED:
        assert extras_registry.origin(kind, name) == EXTRAS_DIST


def test_entry_point_declaration():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((EXTRAS_ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] == EXTRAS_DIST
    assert project["project"]["entry-points"]["voldefense"] == {"extras": "voldefense_extras.plugin"}


def test_factories_name_the_components_themselves(extras_registry):
    """No forwarding wrappers: each factory is a lazy reference to the component, so the options a config is
    checked against are the component's own (one definition, nothing to drift)."""
    from voldefense_extras import losses, sparse_rs, ssim, wide_resnet

    from voldefense.specs import LazyFactory

    expected = {
        ("metric", "ssim"): ssim.SSIM,
        ("backbone", "wide_resnet"): wide_resnet.wide_resnet,
        ("loss", "pal_weighted"): losses.PatchWeightedAggregateLoss,
        ("attack", "sparse_rs"): sparse_rs.SparseRS,
    }
    for (kind, name), target in expected.items():
        factory = extras_registry.get(kind, name).factory
        assert isinstance(factory, LazyFactory) and factory.resolve() is target, name
        assert inspect.signature(factory) == inspect.signature(target), name


def test_unknown_option_is_named(extras_registry):
    with pytest.raises(ConfigError, match="window"):
        extras_registry.get("metric", "ssim").build(windowsize=5)


def test_listing_imports_no_torch():
    """`voldefense plugins` must stay cheap: registering and listing the extras imports neither torch nor the
    component modules."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import voldefense_extras.plugin as p;"
        "from voldefense.registry import Registry;"
        "r = Registry(load_builtins=False, load_entry_points=False); r.register(p, origin='x');"
        "assert len(r.entries()) == 4, r.entries();"
        "heavy = [m for m in sys.modules if m == 'torch' or m.startswith('voldefense_extras.') and m != "
        "'voldefense_extras.plugin'];"
        "print(heavy)"
    )
    command = [sys.executable, "-c", code, str(EXTRAS_SRC)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_fake_installed_distribution_end_to_end(tmp_path, monkeypatch, capsys):
    """Entry-point discovery through importlib.metadata, attributed to the distribution, and the CLI
    listing."""
    monkeypatch.delenv("VOLDEFENSE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("VOLDEFENSE_STRICT_PLUGINS", raising=False)
    _fake_distribution(tmp_path, EXTRAS_DIST, {"extras": "voldefense_extras.plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    assert {(e.kind, e.name) for e in registry.entries() if e.origin == EXTRAS_DIST} == EXPECTED
    assert registry.get("metric", "ssim").larger_is_simpler

    reset_registry()
    try:
        assert cli.main(["plugins", "--json"]) == 0
    finally:
        reset_registry()
    rows = json.loads(capsys.readouterr().out)
    assert all(set(row) == {"kind", "name", "origin"} for row in rows)
    assert {(r["kind"], r["name"]) for r in rows if r["origin"] == EXTRAS_DIST} == EXPECTED


def test_disabling_the_distribution(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, EXTRAS_DIST, {"extras": "voldefense_extras.plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    for value in (EXTRAS_DIST, "voldefense_extras", "extras", "all"):
        monkeypatch.setenv("VOLDEFENSE_DISABLE_PLUGINS", value)
        assert not [e for e in Registry().entries() if e.origin == EXTRAS_DIST], value
