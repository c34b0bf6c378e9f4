"""The plugin registry: lookup, helpful errors, duplicates naming both origins, guarded entry-point loading,
broken hooks, strict mode, VOLDEFENSE_DISABLE_PLUGINS and the `voldefense plugins --json` listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from voldefense import cli
from voldefense.errors import ConfigError, PluginError, UnknownPluginError
from voldefense.hookspecs import hookimpl
from voldefense.registry import (
    BUILTIN_ORIGIN,
    PluginWarning,
    Registry,
    builtin_plugin_modules,
    get_registry,
    reset_registry,
)
from voldefense.specs import BackboneSpec, LossSpec, MetricSpec


def _metric(**options):
    return lambda x, reference=None: x.flatten(1).mean(1)


def _metric_with_bins(bins: int = 8):
    return _metric()


class MetricsPlugin:
    def __init__(self, *names: str):
        self.names = names

    @hookimpl
    def voldefense_metrics(self):
        for name in self.names:
            yield MetricSpec(name=name, factory=_metric_with_bins, description=f"test metric {name}")


class LossPlugin:
    @hookimpl
    def voldefense_losses(self):
        return [LossSpec(name="toy_loss", factory=lambda: None, description="a loss", target="patch")]


def _bare() -> Registry:
    return Registry(load_builtins=False, load_entry_points=False)


def _fake_distribution(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """An installed-looking distribution under `root`: modules plus a .dist-info with entry_points.txt."""
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[voldefense]\n{lines}")


GOOD_MODULE = """
    from voldefense.hookspecs import hookimpl
    from voldefense.specs import MetricSpec

    def factory():
        return lambda x, reference=None: x.flatten(1).mean(1)

    @hookimpl
    def voldefense_metrics():
        yield MetricSpec(name="{name}", factory=factory, description="from a fake distribution")
"""


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """A directory on sys.path for fake distributions; no plugin disabled, not strict."""
    monkeypatch.delenv("VOLDEFENSE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("VOLDEFENSE_STRICT_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _healthy_and_broken(site: Path) -> None:
    _fake_distribution(
        site, "good-plugins", {"good": "vdtest_good"}, {"vdtest_good": GOOD_MODULE.format(name="good_metric")}
    )
    _fake_distribution(
        site,
        "broken-plugins",
        {"broken": "vdtest_broken"},
        {"vdtest_broken": "import vdtest_this_module_does_not_exist\n"},
    )


def _ours(registry: Registry) -> dict[str, str]:
    return {e.name: e.origin for e in registry.entries() if e.origin != BUILTIN_ORIGIN}


# -- lookup -------------------------------------------------------------------------------------------------


def test_lookup_names_and_origin():
    registry = _bare()
    registry.register(MetricsPlugin("alpha", "beta"), origin="pkg-a")
    assert registry.names("metric") == ["alpha", "beta"]
    spec = registry.get("metric", "alpha")
    assert isinstance(spec, MetricSpec) and spec.name == "alpha"
    assert registry.origin("metric", "beta") == "pkg-a"
    assert registry.names("loss") == []


def test_unknown_name_suggests_close_matches():
    registry = _bare()
    registry.register(MetricsPlugin("entropy", "joint_entropy", "mse"), origin="pkg-a")
    with pytest.raises(UnknownPluginError) as info:
        registry.get("metric", "entrop")
    err = info.value
    assert isinstance(err, LookupError)
    assert err.kind == "metric" and err.name == "entrop"
    assert err.close_matches[0] == "entropy"
    assert err.available == ["entropy", "joint_entropy", "mse"]
    assert "did you mean 'entropy'" in str(err)
    with pytest.raises(UnknownPluginError, match="plugin kind"):
        registry.get("metrics", "entropy")


def test_unknown_option_is_named():
    registry = _bare()
    registry.register(MetricsPlugin("alpha"), origin="pkg-a")
    with pytest.raises(ConfigError, match=r"does not accept option\(s\) bnis \(accepted: bins\)"):
        registry.get("metric", "alpha").build(bnis=4)


# -- conflicts and broken plugins -------------------------------------------------------------------------


def test_duplicate_name_names_both_origins_and_spares_the_others():
    registry = _bare()
    registry.register(MetricsPlugin("shared", "only_a"), origin="pkg-a")
    registry.register(MetricsPlugin("shared", "only_b"), origin="pkg-b")
    with pytest.warns(PluginWarning, match="pkg-a and pkg-b"):
        names = registry.names("metric")
    assert names == ["only_a", "only_b", "shared"]
    # The later registration is the offender; the message names both.
    assert "pkg-b" in registry.failures and "pkg-a and pkg-b" in registry.failures["pkg-b"]
    with pytest.raises(PluginError, match="registered by both pkg-a and pkg-b"):
        registry.get("metric", "shared")
    assert registry.get("metric", "only_a").name == "only_a"
    assert {(e.name, e.origin) for e in registry.entries() if e.name == "shared"} == {
        ("shared", "pkg-a"),
        ("shared", "pkg-b"),
    }


def test_clash_with_a_builtin_blames_the_newcomer():
    registry = Registry(load_entry_points=False)
    builtin = registry.names("metric")[0]
    registry.register(MetricsPlugin(builtin), origin="pkg-intruder")
    with pytest.warns(PluginWarning, match=f"{BUILTIN_ORIGIN} and pkg-intruder"):
        registry.names("metric")
    assert list(registry.failures) == ["pkg-intruder"]


def test_same_name_in_different_kinds_is_fine():
    registry = _bare()
    registry.register(MetricsPlugin("toy_loss"), origin="pkg-a")
    registry.register(LossPlugin(), origin="pkg-b")
    assert registry.get("metric", "toy_loss") and registry.get("loss", "toy_loss")
    assert not registry.failures


def test_hook_raising_is_reported_with_its_origin():
    class Raising:
        @hookimpl
        def voldefense_metrics(self):
            raise RuntimeError("boom")

        @hookimpl
        def voldefense_losses(self):
            yield LossSpec(name="survivor", factory=lambda: None, description="still listed")

    registry = _bare()
    registry.register(MetricsPlugin("healthy"), origin="pkg-good")
    registry.register(Raising(), origin="pkg-bad")
    with pytest.warns(PluginWarning, match="pkg-bad"):
        entries = registry.entries()
    assert {(e.kind, e.name) for e in entries} == {("metric", "healthy"), ("loss", "survivor")}
    assert "voldefense_metrics raised RuntimeError: boom" in registry.failures["pkg-bad"]


@pytest.mark.parametrize(
    ("result", "complaint"),
    [
        (
            [BackboneSpec(name="wrong_kind", factory=lambda num_classes: None, description="d")],
            "BackboneSpec",
        ),
        (["just a string"], "yielded str"),
        ("a string", "returned str"),
        ({"name": "dict"}, "returned dict"),
        (MetricSpec(name="lonely", factory=_metric, description="d"), "returned MetricSpec"),
        (42, "returned int"),
    ],
)
def test_hook_returning_the_wrong_type(result, complaint):
    class Wrong:
        @hookimpl
        def voldefense_metrics(self):
            return result

    registry = _bare()
    registry.register(MetricsPlugin("healthy"), origin="pkg-good")
    registry.register(Wrong(), origin="pkg-wrong")
    with pytest.warns(PluginWarning):
        names = registry.names("metric")
    assert names == ["healthy"]
    assert list(registry.failures) == ["pkg-wrong"]
    assert complaint in registry.failures["pkg-wrong"]


def test_failures_are_not_repeated_when_specs_are_collected_again():
    class Raising:
        @hookimpl
        def voldefense_metrics(self):
            raise RuntimeError("boom")

    registry = _bare()
    registry.register(Raising(), origin="pkg-bad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        registry.names("metric")
        registry.register(MetricsPlugin("later"), origin="pkg-later")  # invalidates the collected specs
        assert registry.names("metric") == ["later"]
    assert list(registry.failures) == ["pkg-bad"]


def test_plugin_without_marked_hooks_is_reported():
    class Forgot:
        def voldefense_metrics(self):  # no @hookimpl: pluggy would ignore it silently
            yield MetricSpec(name="invisible", factory=_metric, description="d")

    registry = _bare()
    with pytest.warns(PluginWarning, match="implements no voldefense hook"):
        registry.register(Forgot(), origin="pkg-forgot")
    assert "hookimpl" in registry.failures["pkg-forgot"]


def test_hook_with_unknown_name_is_reported():
    class Misspelt:
        @hookimpl
        def voldefense_metric(self):  # singular: no such hook
            return []

    registry = _bare()
    with pytest.warns(PluginWarning, match="pkg-typo"):
        registry.register(Misspelt(), origin="pkg-typo")
    assert "voldefense_metric" in registry.failures["pkg-typo"]
    assert registry.entries() == []


# -- entry points ---------------------------------------------------------------------------------------


def test_entry_points_broken_import_is_reported_and_others_load(fake_site):
    _healthy_and_broken(fake_site)
    with pytest.warns(PluginWarning, match="broken-plugins"):
        registry = Registry(load_builtins=False)
    assert _ours(registry) == {"good_metric": "good-plugins"}
    message = registry.failures["broken-plugins"]
    assert "'broken'" in message and "ModuleNotFoundError" in message and "vdtest_this_module" in message


def test_entry_point_module_raising_at_import(fake_site):
    _fake_distribution(
        fake_site,
        "raising-plugins",
        {"raiser": "vdtest_raiser"},
        {"vdtest_raiser": "raise ValueError('nope')\n"},
    )
    with pytest.warns(PluginWarning):
        registry = Registry(load_builtins=False)
    assert "ValueError: nope" in registry.failures["raising-plugins"]


def test_entry_point_duplicating_a_name_names_both_packages(fake_site):
    _fake_distribution(
        fake_site, "pkg-one", {"one": "vdtest_one"}, {"vdtest_one": GOOD_MODULE.format(name="dup")}
    )
    _fake_distribution(
        fake_site, "pkg-two", {"two": "vdtest_two"}, {"vdtest_two": GOOD_MODULE.format(name="dup")}
    )
    registry = Registry(load_builtins=False)
    with pytest.warns(PluginWarning), pytest.raises(PluginError) as info:
        registry.get("metric", "dup")
    assert "pkg-one" in str(info.value) and "pkg-two" in str(info.value)


def test_strict_mode_raises(fake_site):
    _healthy_and_broken(fake_site)
    with pytest.raises(PluginError, match="plugin broken-plugins: entry point 'broken'"):
        Registry(load_builtins=False, strict=True)
    registry = Registry(load_builtins=False, load_entry_points=False, strict=True)
    registry.register(MetricsPlugin("same"), origin="pkg-a")
    registry.register(MetricsPlugin("same"), origin="pkg-b")
    with pytest.raises(PluginError, match="pkg-a and pkg-b"):
        registry.names("metric")


def test_strict_mode_from_environment(fake_site, monkeypatch):
    _healthy_and_broken(fake_site)
    monkeypatch.setattr("voldefense.registry.builtin_plugin_modules", lambda: [])
    monkeypatch.setenv("VOLDEFENSE_STRICT_PLUGINS", "1")
    reset_registry()
    try:
        with pytest.raises(PluginError, match="broken-plugins"):
            get_registry()
        monkeypatch.setenv("VOLDEFENSE_STRICT_PLUGINS", "0")
        with pytest.warns(PluginWarning):
            assert "broken-plugins" in get_registry().failures
    finally:
        reset_registry()


@pytest.mark.parametrize("value", ["broken-plugins", "Broken_Plugins", "broken", "all", "other, broken"])
def test_disable_plugins(fake_site, monkeypatch, value):
    _healthy_and_broken(fake_site)
    monkeypatch.setenv("VOLDEFENSE_DISABLE_PLUGINS", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)  # the broken package is not even imported
        registry = Registry(load_builtins=False)
    assert not registry.failures
    assert _ours(registry) == ({} if value == "all" else {"good_metric": "good-plugins"})


# -- built-ins ------------------------------------------------------------------------------------------


def test_builtins_are_ordinary_plugins():
    """Every built-in module registers through the public hooks, attributed to voldefense, no failures."""
    registry = Registry(load_entry_points=False)
    assert not registry.failures, registry.failures
    modules = builtin_plugin_modules()
    assert modules, "no built-in plugin modules listed"
    for module_name in modules:
        plugin = registry.pm.get_plugin(module_name)
        assert plugin is not None and registry.pm.get_hookcallers(plugin), module_name
    assert {e.origin for e in registry.entries()} == {BUILTIN_ORIGIN}


# -- the CLI listing ------------------------------------------------------------------------------------


def test_plugins_json_lists_kind_name_origin(monkeypatch, capsys):
    registry = _bare()
    registry.register(MetricsPlugin("alpha"), origin="pkg-a")
    registry.register(LossPlugin(), origin="pkg-b")
    monkeypatch.setattr("voldefense.registry._cached_registry", lambda strict: registry)
    assert cli.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {"kind": "metric", "name": "alpha", "origin": "pkg-a"},
        {"kind": "loss", "name": "toy_loss", "origin": "pkg-b"},
    ]


def test_plugins_listing_reports_failures(monkeypatch, capsys):
    class Raising:
        @hookimpl
        def voldefense_metrics(self):
            raise RuntimeError("boom")

    registry = _bare()
    registry.register(MetricsPlugin("alpha"), origin="pkg-a")
    registry.register(Raising(), origin="pkg-bad")
    monkeypatch.setattr("voldefense.registry._cached_registry", lambda strict: registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)  # the listing says it itself, not a second time
        assert cli.main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["KIND", "NAME", "ORIGIN", "DESCRIPTION"]
    assert "alpha" in out and "pkg-a" in out
    assert err.startswith("warning: voldefense plugin pkg-bad:") and "boom" in err and err.count("\n") == 1
    assert cli.main(["plugins", "--strict"]) == 1


@pytest.mark.parametrize(
    "command",
    [["plugins"], ["run", "{config}", "--set", "model.backbone=resnt", "--out", "{out}"]],
    ids=["plugins", "run"],
)
def test_a_broken_plugin_is_one_warning_line_said_once_by_the_real_executable(tmp_path, command):
    """Not Python's `file:line: PluginWarning: ...` plus the source line, then the listing's own line: one line."""
    _healthy_and_broken(tmp_path)
    from tiny_quickstart import QUICKSTART

    argv = [a.format(config=QUICKSTART, out=tmp_path / "run") for a in command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLDEFENSE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    done = subprocess.run(
        [sys.executable, "-m", "voldefense.cli", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    lines = done.stderr.splitlines()
    ours = [line for line in lines if "broken-plugins" in line]
    assert ours == [
        "warning: voldefense plugin broken-plugins: entry point 'broken' (vdtest_broken) failed to import: "
        "ModuleNotFoundError: No module named 'vdtest_this_module_does_not_exist'"
    ], done.stderr
    if command[0] == "plugins":
        assert done.returncode == 0 and lines == ours and "good_metric" in done.stdout
    else:  # the run's own error follows on one line of its own
        assert done.returncode == 2 and len(lines) == 2 and "model.backbone: unknown backbone 'resnt'" in lines[1]


def test_listing_the_builtin_plugins_imports_no_heavy_package():
    # Factories, not instances: listing must stay cheap. A fresh interpreter, so earlier tests' imports don't count.
    code = (
        "import sys\n"
        "from voldefense.registry import Registry\n"
        "entries = Registry(load_entry_points=False).entries()\n"
        "print(len(entries), sorted(m for m in ('torch', 'art', 'scipy', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 24 and out[1:] == ["[]"]
