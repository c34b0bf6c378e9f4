"""Option checks and defaults shared by the metric plugins; torch-free, so listing plugins stays cheap."""

from __future__ import annotations

import math

from voldefense.errors import ConfigError

MAX_BINS = 4096
DEFAULT_BINS = 32
"""Default number of intensity bins: fine enough to tell textures apart, coarse enough that the joint
histogram of a 3x16x16 patch (768 values in 32*32 = 1024 cells) is not degenerate. With 256 bins almost every
(x, r) pair falls in its own joint cell, so the joint entropy saturates at log2(n) and MI just tracks
H(x) + H(r)."""


def check_bins(bins: object) -> int:
    """Validate the `bins` option: an int in [2, 4096] (joint codes ``a * bins + b`` must fit in int32)."""
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
        raise ConfigError(f"bins must be an integer between 2 and {MAX_BINS}, got {bins!r}")
    return bins


def check_positive(value: object, what: str) -> float:
    """Validate a positive finite number option."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and math.isfinite(value) and value > 0
    if not ok:
        raise ConfigError(f"{what} must be a positive finite number, got {value!r}")
    return float(value)
