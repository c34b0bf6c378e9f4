"""Contract tests over every registered metric: shapes, finiteness, devices, no Python loop over samples."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from voldefense.registry import get_registry

BUILTIN = ("entropy", "mi", "kl", "psnr", "max_norm", "joint_entropy", "mse")


def test_all_seven_builtins_registered():
    registry = get_registry()
    for name in BUILTIN:
        assert registry.origin("metric", name) == "voldefense"


@pytest.mark.parametrize("name", get_registry().names("metric"))
def test_metric_contract(name):
    spec = get_registry().get("metric", name)
    metric = spec.build()
    x = torch.rand(7, 3, 5, 4)
    ref = torch.rand(3, 5, 4)
    scores = metric(x, ref)
    assert scores.shape == (7,) and scores.is_floating_point() and torch.isfinite(scores).all()
    # Identical inputs and constant images must stay finite too (empty bins, zero MSE).
    for a, b in ((x, x), (torch.zeros(2, 3, 5, 4), torch.zeros(3, 5, 4)), (torch.ones(2, 1, 1, 1), None)):
        if b is None and spec.distance:
            b = a
        assert torch.isfinite(metric(a, b)).all()
    # Each sample is scored on its own: batching does not change scores.
    one_by_one = torch.cat([metric(x[i : i + 1], ref) for i in range(7)])
    torch.testing.assert_close(scores, one_by_one)


@pytest.mark.parametrize("name", BUILTIN)
def test_float64_and_empty_batch(name):
    metric = get_registry().get("metric", name).build()
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    assert metric(x, x[:1]).dtype == torch.float64
    assert metric(x[:0], x[:1]).shape == (0,)


@pytest.mark.gpu
@pytest.mark.parametrize("name", BUILTIN)
def test_cuda_matches_cpu(name):
    metric = get_registry().get("metric", name).build()
    x, ref = torch.rand(64, 3, 16, 16), torch.rand(1, 3, 16, 16)
    got = metric(x.cuda(), ref.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), metric(x, ref), rtol=1e-4, atol=1e-4)


def test_metric_plugin_modules_do_not_import_torch():
    # Listing plugins must stay cheap: the metric modules import torch only when a metric is first called.
    code = (
        "import importlib, sys; from voldefense.plugins import metrics; "
        "specs = [s for m in metrics.MODULES "
        "for s in importlib.import_module('voldefense.plugins.metrics.' + m).voldefense_metrics()]; "
        "print(len(specs), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["7", "False"]
