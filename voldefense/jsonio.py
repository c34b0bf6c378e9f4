"""Strict JSON for every file the project writes (results.json, metrics.jsonl, bench outputs).

Python's `json` writes NaN and infinity as the tokens ``NaN`` and ``Infinity`` by default, which are not JSON:
other readers (``jq``, JavaScript, most JSON libraries) reject the file. An undefined figure (the defense success
rate of a model that got no image right, an accuracy over zero images) is written as ``null`` instead, and
``allow_nan=False`` guarantees no such token slips through. Readers treat ``null`` as "not defined" (the report
prints a dash, the plots leave a gap).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def strict(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-inf; numpy floats included) replaced by None, recursively
    through dicts, lists and tuples."""
    if isinstance(value, float):  # numpy.float64 is a float subclass
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, (np.floating, np.ndarray)) and value.ndim == 0 and value.dtype.kind == "f":
        return strict(float(value))  # a numpy float32 scalar or a 0-d array
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `strict(value)` that refuses any remaining NaN/infinity (``allow_nan=False``)."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def as_float(value: Any) -> float:
    """A figure read back from strict JSON as a float: ``null`` (not defined) becomes NaN, for arithmetic and
    plotting (matplotlib leaves a gap)."""
    return math.nan if value is None else float(value)
