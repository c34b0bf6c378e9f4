"""The command line separates user errors from bugs: a `VoldefenseError` (config, data, checkpoint, plugin) or an
OS error is one line and exit status 2; anything else — API misuse such as a `TensorError`, or any other
exception — is a bug, shown with its traceback and a request to report it, exit status 1."""

from __future__ import annotations

import types

import pytest
import torch

from voldefense import cli
from voldefense.errors import (
    ArgumentTypeError,
    CheckpointError,
    ConfigError,
    DataError,
    TensorError,
    UsageError,
    VoldefenseError,
)


def _command_raising(monkeypatch, error: BaseException) -> None:
    """Make `voldefense plugins` raise `error` from inside the command."""

    def main(args):
        raise error

    fake = types.SimpleNamespace(main=main, add_arguments=lambda parser: None)
    # Every subcommand module is the fake (the parser only needs add_arguments); only cli's own lookups change.
    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=lambda name: fake))


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("training.epochs: expected an integer >= 1, got 'x'"),
        DataError("dataset folder data/x is missing; set data.options.root"),
        CheckpointError("checkpoint f.pt is corrupt; rerun training"),
        OSError(28, "No space left on device"),
    ],
)
def test_user_errors_are_one_line(monkeypatch, capsys, error):
    _command_raising(monkeypatch, error)
    assert cli.main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("voldefense plugins: error: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "error", [TensorError("images must be (B, C, H, W), got (3, 32, 32)"), KeyError("attacked_accuracy")]
)
def test_bugs_show_the_traceback_and_ask_for_a_report(monkeypatch, capsys, error):
    _command_raising(monkeypatch, error)
    assert cli.main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and type(error).__name__ in err
    assert err.rstrip().splitlines()[-1].startswith("voldefense plugins: internal error")
    assert "please report this at" in err


def test_issues_url_comes_from_the_project_urls(monkeypatch):
    class Meta:
        def get_all(self, key):
            return ["Homepage, https://example.org/vd", "Issues, https://example.org/vd/issues"]

    monkeypatch.setattr("importlib.metadata.metadata", lambda name: Meta())
    assert cli.issues_url() == "https://example.org/vd/issues"


def test_api_misuse_is_a_value_or_type_error_not_a_user_error():
    from voldefense.volumizer import Volumizer

    volumizer = Volumizer(patch_size=4, ranking="identity")
    with pytest.raises(TensorError, match=r"images must be a tensor of shape \(B, C, H, W\)") as info:
        volumizer(torch.rand(3, 8, 8))
    assert isinstance(info.value, ValueError) and not isinstance(info.value, VoldefenseError)
    assert "\n" not in str(info.value)
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, UsageError)
    assert not issubclass(UsageError, VoldefenseError)
