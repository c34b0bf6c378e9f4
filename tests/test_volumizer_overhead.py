"""The volumizer's per-call fast path: metrics built once, references broadcast (never copied per patch), no
host-device syncs, no process-wide thread changes for small batches; all with unchanged results."""

from __future__ import annotations

import pytest
import torch

from voldefense.plugins.metrics import _histogram as hist
from voldefense.ranking import rank_groups, score_groups
from voldefense.registry import get_registry
from voldefense.specs import MetricSpec
from voldefense.volumizer import Volumizer

DISTANCE = ("mi", "kl", "psnr", "max_norm", "joint_entropy", "mse")


def _images(b: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(b, 3, size, size, generator=g) * 255).round() / 255
    images[0, :, :16, :16] = 0.25  # a flat patch: ties and empty bins
    return images


@pytest.mark.parametrize("name", DISTANCE)
@pytest.mark.parametrize("options", [{}, {"bins": 256}])
def test_grouped_call_equals_flat_call_with_copied_reference(name, options):
    spec = get_registry().get("metric", name)
    metric = spec.build(**(options if name in ("mi", "kl", "joint_entropy") else {}))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 7, 3, 6, 6, generator=g)
    ref = torch.rand(5, 1, 3, 6, 6, generator=g)
    grouped = metric.grouped(x, ref)
    flat = metric(x.reshape(35, 3, 6, 6), ref.expand(5, 7, 3, 6, 6).reshape(35, 3, 6, 6))
    assert grouped.shape == (5, 7)
    assert torch.equal(grouped.reshape(35), flat)
    # A reference shared by every group broadcasts too.
    assert torch.equal(metric.grouped(x, ref[0]), metric(x.reshape(35, 3, 6, 6), ref[0]).reshape(5, 7))


@pytest.mark.parametrize("name", DISTANCE)
def test_many_small_blocks_give_the_same_scores(name, monkeypatch):
    # The CPU path works in cache-sized blocks (whole groups, or slices of one group's samples); force tiny
    # budgets so both kinds of block and the copies into the output are exercised.
    metric = get_registry().get("metric", name).build()
    x = torch.rand(4, 9, 3, 8, 8)
    ref = torch.rand(4, 1, 3, 8, 8)
    one_block = metric.grouped(x, ref)
    for budget in (1, 3 * 64 * 4, 3 * 64 * 20):
        monkeypatch.setattr(hist, "_BUDGET_CPU", budget)
        assert torch.equal(metric.grouped(x, ref), one_block)
        assert torch.equal(metric(x[1], ref[1]), one_block[1])


def test_sync_free_counting_equals_bincount():
    codes = torch.randint(0, 37, (11, 50), dtype=torch.int32)
    for dtype in (torch.float32, torch.float64):
        by_bincount = hist._counts(codes, 37, dtype, sync_free=False)
        by_index_add = hist._counts(codes, 37, dtype, sync_free=True)
        assert by_index_add.dtype == dtype and torch.equal(by_index_add, by_bincount)
    joint = torch.randint(0, 1024, (6, 300), dtype=torch.int32)
    assert torch.equal(hist._sum_clogc_sorted(joint, torch.float64, 1024), hist._sum_clogc_sorted(joint, torch.float64))


def test_volumizer_builds_its_metrics_once(monkeypatch):
    v = Volumizer(16, metric="mi", metric_options={"bins": 16})
    v(_images())  # builds on first use at the latest
    calls = []
    original = MetricSpec.build
    monkeypatch.setattr(MetricSpec, "build", lambda self, **kw: calls.append(self.name) or original(self, **kw))
    monkeypatch.setattr(type(get_registry()), "get", lambda *a, **k: calls.append("registry") or None)
    for _ in range(3):
        v(_images())
    assert calls == []
    # Reassigning the options after construction is honoured (the built metrics are rebuilt once).
    monkeypatch.undo()
    v.metric_options = {"bins": 8}
    _, _, scores = v.volumize_with_scores(_images())
    _, expected = rank_groups(v.patches(_images()), "mi", metric_options={"bins": 8})
    assert torch.equal(scores, expected)


@pytest.mark.parametrize("metric", ["entropy", *DISTANCE])
@pytest.mark.parametrize("reference", ["auto", 1, "tensor"])
def test_volumizer_equals_rank_groups(metric, reference):
    images = _images()
    ref = torch.rand(3, 16, 16) if reference == "tensor" else reference
    v = Volumizer(16, metric=metric, reference=ref)
    volume, perm, scores = v.volumize_with_scores(images)
    expected_perm, expected_scores = rank_groups(v.patches(images), metric, reference=ref)
    assert torch.equal(perm, expected_perm) and torch.equal(scores, expected_scores)
    patches = v.patches(images)
    assert torch.equal(volume, torch.stack([patches[b, perm[b]] for b in range(3)]).permute(0, 2, 1, 3, 4))


def test_metric_without_grouped_gets_the_flat_call_with_each_groups_reference():
    seen = []

    def l1(x, reference=None):
        seen.append((tuple(x.shape), tuple(reference.shape)))
        return (x - reference).abs().flatten(1).mean(1)

    spec = MetricSpec(name="l1_test", factory=lambda: l1, description="test metric", distance=True)
    samples = torch.rand(2, 4, 1, 3, 3)
    scores = score_groups(samples, spec, l1, reference=0)
    assert seen == [((8, 1, 3, 3), (8, 1, 3, 3))]
    expected = (samples - samples[:, :1]).abs().flatten(2).mean(2)
    torch.testing.assert_close(scores, expected)


def test_gradients_still_flow_through_the_gather():
    images = _images().requires_grad_(True)
    v = Volumizer(16, metric="mse")
    volume, perm = v.volumize(images)
    weights = torch.arange(volume.numel(), dtype=volume.dtype).reshape(volume.shape)
    (volume * weights).sum().backward()
    assert torch.equal(images.grad, v.unvolumize(weights, perm, (32, 32)))


def test_small_batches_leave_the_thread_setting_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    for metric in ("entropy", "mi", "kl", "mse"):
        Volumizer(16, metric=metric)(_images(1))
    assert calls == []
    # A big CPU batch still runs its chunk loops on one thread, and restores the setting afterwards.
    Volumizer(16, metric="mse")(torch.rand(64, 3, 32, 32))
    assert calls and calls[0] == 1 and calls[-1] == 4


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["entropy", *DISTANCE])
def test_cuda_volumize_never_syncs_and_matches_cpu(metric):
    images = _images(4)
    v = Volumizer(16, metric=metric)
    expected = v.volumize_with_scores(images)
    on_gpu = images.cuda()  # outside the guarded region: a blocking host-to-device copy synchronises itself
    v.volumize_with_scores(on_gpu)  # warm-up: lazy initialisation may sync once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = v.volumize_with_scores(on_gpu)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(got[0].cpu(), expected[0]) and torch.equal(got[1].cpu(), expected[1])
    torch.testing.assert_close(got[2].cpu(), expected[2], rtol=1e-5, atol=1e-5)
