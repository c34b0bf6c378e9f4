"""User-facing errors, and errors of API misuse.

Every error a user can cause (config, data, images, checkpoints, plugins) is a `VoldefenseError`: its message is
one line naming the problem and the fix. The command line prints that line and exits non-zero, never a traceback.

Calling the Python API wrongly — a tensor of the wrong shape, dtype or range, an argument of the wrong type — is a
`UsageError` (a `ValueError`; `ArgumentTypeError` is also a `TypeError`), with the same one-line message. It is a
bug in the calling code (or in voldefense itself), not bad input, so the command line shows its traceback and asks
for a report, as for any other unexpected exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VoldefenseError(Exception):
    """Base of every error caused by user input; `str(err)` is a one-line explanation with the fix."""


class ConfigError(VoldefenseError, ValueError):
    """A configuration value is missing, of the wrong type, out of range or unknown."""


class DataError(VoldefenseError):
    """A dataset or image file is missing, corrupt or of the wrong format."""


class CheckpointError(VoldefenseError):
    """A checkpoint is missing, corrupt or does not match the model."""


class TrainingError(VoldefenseError):
    """Training diverged (a non-finite loss or weights); the last good checkpoint is kept."""


class PluginError(VoldefenseError):
    """A plugin failed to load, registered a duplicate name, or returned something that is not a spec."""


class UsageError(ValueError):
    """The Python API was called with an argument it cannot take; `str(err)` names the argument and what was
    expected, in one line. Not a `VoldefenseError`: no configuration or user file can cause it."""


class TensorError(UsageError):
    """A tensor argument has the wrong shape, dtype or value range (e.g. images not ``(B, C, H, W)`` in [0, 1])."""


class ArgumentTypeError(UsageError, TypeError):
    """An argument is of the wrong type (not a tensor, not an ``nn.Module``, ...)."""


class UnknownPluginError(VoldefenseError, LookupError):
    """No plugin of `kind` is registered under `name`."""

    def __init__(self, kind: str, name: str, available: Iterable[str]):
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        self.close_matches = difflib.get_close_matches(name, self.available, n=3, cutoff=0.5)
        hint = f"; did you mean {self.close_matches[0]!r}?" if self.close_matches else ""
        listing = ", ".join(self.available) if self.available else "none registered"
        super().__init__(f"unknown {kind} {name!r}{hint} (available {kind}s: {listing})")
