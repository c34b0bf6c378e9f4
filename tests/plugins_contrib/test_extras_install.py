"""The real thing: `pip install` voldefense-extras into a fresh environment, list its plugins there and run the
package's example experiment with them."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from extras_paths import EXTRAS_DIST, EXTRAS_ROOT


@dataclass(frozen=True)
class Installed:
    """A venv holding a real `pip install` of voldefense-extras: its python, environment and scratch folder."""

    python: str
    env: dict[str, str]
    venv: Path
    source: Path
    work: Path


def _site_dirs() -> list[str]:
    """The site-packages folders of the interpreter running the tests (system Python in CI, a venv for a user,
    with its base's folders too when it was made with --system-site-packages)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _child_venv(venv: Path) -> str:
    """A venv that sees *this* interpreter's packages and installs into its own site-packages; its python.

    `venv --system-site-packages` is not that: made from inside a venv, it sees the *base* interpreter's packages
    (no torch, often an old setuptools without bdist_wheel). Instead a .pth file in the child's site-packages
    adds this interpreter's site folders with `site.addsitedir`, which also runs their own .pth files (editable
    installs), after the child's own folder, so what pip installs there wins.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    lines = [f"import site; site.addsitedir({d!r})" for d in _site_dirs()]
    (Path(purelib) / "_voldefense_test_parent.pth").write_text("\n".join(lines) + "\n")
    return python


def _check_build_backend() -> None:
    """The offline build (no index, no build isolation) uses this environment's setuptools, which must build
    wheels by itself (>= 70.1; older ones need the separate `wheel` package). The `dev` extra installs one."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("setuptools")
    except PackageNotFoundError:
        found = "none"
    major_minor = tuple(int(p) for p in found.split(".")[:2] if p.isdigit()) if found != "none" else (0,)
    if major_minor < (70, 1):
        pytest.fail(f"setuptools {found} cannot build wheels offline; install the dev extra: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    # No network: build with what this environment has, and never touch it (pip installs into the child venv).
    _check_build_backend()
    tmp_path = tmp_path_factory.mktemp("extras_install")
    venv = tmp_path / "venv"
    python = _child_venv(venv)
    source = tmp_path / "voldefense-extras"
    shutil.copytree(EXTRAS_ROOT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    for name in ("VOLDEFENSE_DISABLE_PLUGINS", "VOLDEFENSE_STRICT_PLUGINS"):
        env.pop(name, None)
    done = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Installed(python, env, venv, source, tmp_path)


@pytest.mark.slow
def test_pip_install_lists_the_plugins_with_their_origin(installed):
    python, env, venv, tmp_path = installed.python, dict(installed.env), installed.venv, installed.work
    listed = subprocess.run(
        [python, "-m", "voldefense.cli", "plugins", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    )  # fmt: skip
    rows = json.loads(listed.stdout)
    ours = {(r["kind"], r["name"]) for r in rows if r["origin"] == EXTRAS_DIST}
    assert ours == {
        ("metric", "ssim"),
        ("backbone", "wide_resnet"),
        ("loss", "pal_weighted"),
        ("attack", "sparse_rs"),
    }
    assert EXTRAS_DIST not in listed.stderr  # no warning about our package

    # Installed, the plugins build and run through the public API, imported from the venv, not the repo.
    code = (
        "import torch, voldefense_extras; from voldefense.registry import build;"
        "m = build('metric', 'ssim'); x = torch.rand(4, 3, 8, 8);"
        "assert m(x, x[:1]).shape == (4,);"
        "print(voldefense_extras.__file__)"
    )
    used = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert str(venv) in used.stdout

    env["VOLDEFENSE_DISABLE_PLUGINS"] = EXTRAS_DIST
    hidden = subprocess.run(
        [python, "-m", "voldefense.cli", "plugins", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert not [r for r in json.loads(hidden.stdout) if r["origin"] == EXTRAS_DIST]


@pytest.mark.slow
def test_installed_extras_run_the_example_experiment(installed):
    """`voldefense run examples/extras.yaml` in the venv, end to end on the real entry points: the CLI in a fresh
    process, the plugins found through the installed distribution's metadata (the repo's source is not on the
    path), at a tiny size."""
    out = installed.work / "run"
    overrides = [
        "data.options.train_size=64",
        "data.options.test_size=32",
        "data.val_size=16",
        "training.epochs=1",
        "training.batch_size=32",
        "model.width=0.125",
        "attacks.0.images=8",
        "attacks.0.sizes=[2]",
        "attacks.0.options.max_queries=20",
        "attacks.1.images=8",
        "attacks.1.sizes=[2]",
        "output.plots=false",
    ]
    command = [installed.python, "-m", "voldefense.cli", "run", str(installed.source / "examples" / "extras.yaml")]
    command += ["--out", str(out), "--device", "cpu"] + [a for item in overrides for a in ("--set", item)]
    env = {**installed.env, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=installed.work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert EXTRAS_DIST not in done.stderr.replace(str(installed.source), "")  # no plugin warning about us

    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    keys = {(r["model"], r["attack"], r["size"]) for r in results["rows"]}
    assert keys == {(m, a, 2) for m in "fg" for a in ("sparse_rs", "random_pixels")}
    assert all(r["mean_queries"] <= 20 for r in results["rows"] if r["attack"] == "sparse_rs")
    g = results["models"]["g"]["details"]
    assert (g["backbone"], g["metric"], g["loss"]) == ("wide_resnet", "ssim", "pal_weighted")
    assert (out / "checkpoints" / "g.pt").is_file() and (out / "report.md").is_file()
