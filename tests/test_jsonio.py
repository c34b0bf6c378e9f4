"""Strict JSON: non-finite numbers become null, and no NaN/Infinity token is ever written."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from voldefense import jsonio


def strict_loads(text: str):
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_anywhere_become_null():
    value = {
        "nan": math.nan,
        "rows": [{"inf": math.inf, "ok": 0.5}, (-math.inf, 1)],
        "numpy": [np.float32("nan"), np.float64(2.0), np.array(np.inf)],
        "kept": [True, 3, "NaN", None],
    }
    text = jsonio.dumps(value, indent=2)
    assert strict_loads(text) == {
        "nan": None,
        "rows": [{"inf": None, "ok": 0.5}, [None, 1]],
        "numpy": [None, 2.0, None],
        "kept": [True, 3, "NaN", None],
    }


def test_anything_strict_cannot_clean_is_refused_not_written():
    with pytest.raises(ValueError, match="JSON compliant"):
        jsonio.dumps({"tensor": torch.tensor(float("nan"))}, default=lambda t: t.item())


def test_null_reads_back_as_nan_for_arithmetic():
    assert math.isnan(jsonio.as_float(None)) and jsonio.as_float(0.25) == 0.25 and jsonio.as_float(1) == 1.0


def test_bench_json_outputs_are_strict(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).parents[1] / "bench" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    common.write_json(tmp_path / "b.json", {"images_per_second": math.inf, "ratio": math.nan, "n": 4})
    assert strict_loads((tmp_path / "b.json").read_text()) == {"images_per_second": None, "ratio": None, "n": 4}
