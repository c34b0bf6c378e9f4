"""The real thing: `pip install` voldefense-extras into a fresh environment and list its plugins there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from extras_paths import EXTRAS_DIST, EXTRAS_ROOT


@pytest.mark.slow
def test_pip_install_lists_the_plugins_with_their_origin(tmp_path):
    # A venv that sees this environment's packages (voldefense, torch, pip, setuptools) but installs into its
    # own site-packages, so the test never touches the environment it runs in. No network: build with what is
    # here.
    venv = tmp_path / "venv"
    command = [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)]
    subprocess.run(command, check=True)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    source = tmp_path / "voldefense-extras"
    shutil.copytree(EXTRAS_ROOT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("VOLDEFENSE_DISABLE_PLUGINS", None)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        check=True,
        env=env,
        cwd=tmp_path,
    )

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
    used = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    )
    assert str(venv) in used.stdout

    env["VOLDEFENSE_DISABLE_PLUGINS"] = EXTRAS_DIST
    hidden = subprocess.run(
        [python, "-m", "voldefense.cli", "plugins", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert not [r for r in json.loads(hidden.stdout) if r["origin"] == EXTRAS_DIST]
