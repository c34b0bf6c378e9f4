"""The top-level `voldefense` command: a user-facing --help and --version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from voldefense import cli


def test_help_describes_the_tool_for_a_user(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps the option help to the terminal's width
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert description.startswith("Make image classifiers robust to localized adversarial attacks")
    assert description.rstrip().endswith(".")  # whole sentences, not a docstring cut at its first line
    assert "voldefense.commands" not in out and "`" not in out  # no developer notes
    for command in cli.SUBCOMMANDS:
        assert f"voldefense {command}" in out  # an example of every command
    assert max(len(line) for line in out.splitlines()) < 80


def test_version_comes_from_the_installed_distribution(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"voldefense {version('voldefense')}"


def test_version_from_the_real_executable():
    done = subprocess.run([sys.executable, "-m", "voldefense.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"voldefense {version('voldefense')}", done.stderr
