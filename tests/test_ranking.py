"""The shared ranking routine: orders, references, ties, batching, errors."""

from __future__ import annotations

import pytest
import torch

from voldefense.errors import ConfigError, PluginError, TensorError, UnknownPluginError
from voldefense.ranking import lowest_entropy_index, rank_groups, rank_samples
from voldefense.registry import get_registry
from voldefense.specs import MetricSpec


def groups(b: int = 3, m: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, m, 3, 4, 4), generator=g).float() / 255


def test_perm_sorts_scores_ascending_and_descending():
    x = groups()
    perm, scores = rank_groups(x, "mse", order="ascending")
    assert perm.dtype == torch.long and perm.shape == scores.shape == (3, 6)
    assert torch.equal(perm.sort(1).values, torch.arange(6).expand(3, 6))
    ranked = scores.gather(1, perm)
    assert torch.all(ranked[:, 1:] >= ranked[:, :-1])
    perm_d, scores_d = rank_groups(x, "mse", order="descending")
    assert torch.equal(scores, scores_d)
    assert torch.all(scores.gather(1, perm_d).diff(dim=1) <= 0)


def test_scores_are_in_source_order_and_match_the_metric():
    x = groups()
    perm, scores = rank_groups(x, "mse", reference=2)
    metric = get_registry().get("metric", "mse").build()
    for b in range(3):
        torch.testing.assert_close(scores[b], metric(x[b], x[b, 2]))
    assert torch.all(perm[:, 0] == 2)  # the reference is at distance 0 from itself


@pytest.mark.parametrize(
    ("metric", "flip"), [("mi", True), ("psnr", True), ("mse", False), ("entropy", False)]
)
def test_simple_first_uses_larger_is_simpler(metric, flip):
    x = groups()
    simple, _ = rank_groups(x, metric, order="simple_first")
    complex_, _ = rank_groups(x, metric, order="complex_first")
    asc, _ = rank_groups(x, metric, order="ascending")
    desc, _ = rank_groups(x, metric, order="descending")
    assert torch.equal(simple, desc if flip else asc)
    assert torch.equal(complex_, asc if flip else desc)


def test_ties_keep_source_order_in_both_directions():
    x = torch.full((2, 5, 1, 2, 2), 0.5)
    for order in ("ascending", "descending"):
        perm, _ = rank_groups(x, "entropy", order=order)
        assert torch.equal(perm, torch.arange(5).expand(2, 5))


def test_auto_reference_is_lowest_entropy_sample():
    x = groups()
    x[0, 4] = 0.25  # constant: entropy 0
    x[1, 1] = 0.75
    x[2, 3] = x[2, 5] = 0.5  # tie: the lower index wins
    assert lowest_entropy_index(x).tolist() == [4, 1, 3]
    perm, scores = rank_groups(x, "mse", reference="auto")
    assert perm[:, 0].tolist() == [4, 1, 3]
    assert scores[0, 4] == 0


def test_tensor_references_shared_and_per_group():
    x = groups()
    shared = torch.rand(3, 4, 4)
    _, scores = rank_groups(x, "mse", reference=shared)
    torch.testing.assert_close(scores, (x - shared).square().flatten(2).mean(2))
    per_group = torch.rand(3, 3, 4, 4)
    _, scores = rank_groups(x, "mse", reference=per_group)
    torch.testing.assert_close(scores, (x - per_group[:, None]).square().flatten(2).mean(2))
    with pytest.raises(TensorError, match="reference tensor"):
        rank_groups(x, "mse", reference=torch.rand(2, 4, 4))


def test_batched_equals_group_by_group():
    x = groups(5, 8)
    perm, scores = rank_groups(x, "mi", order="descending")
    for b in range(5):
        p, s = rank_samples(x[b], "mi", order="descending")
        assert torch.equal(p, perm[b])
        torch.testing.assert_close(s, scores[b])


def test_metric_options_and_spec_objects():
    x = groups()
    spec = get_registry().get("metric", "entropy")
    _, s8 = rank_groups(x, spec, metric_options={"bins": 8})
    torch.testing.assert_close(s8, spec.build(bins=8)(x.flatten(0, 1)).view(3, 6))


def test_no_gradient_through_scores():
    x = groups().requires_grad_()
    perm, scores = rank_groups(x, "mse")
    assert not scores.requires_grad and not perm.requires_grad


def test_errors():
    x = groups()
    with pytest.raises(ConfigError, match="order"):
        rank_groups(x, "mse", order="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="out of range"):
        rank_groups(x, "mse", reference=6)
    with pytest.raises(ConfigError, match="reference"):
        rank_groups(x, "mse", reference="lowest")
    with pytest.raises(UnknownPluginError, match="mi"):
        rank_groups(x, "mutual")
    with pytest.raises(ConfigError, match="bins"):
        rank_groups(x, "mi", metric_options={"bins": 1})
    with pytest.raises(ConfigError, match="colour"):
        rank_groups(x, "mse", metric_options={"colour": 1})


def test_metric_with_wrong_output_shape_is_a_plugin_error():
    def factory():
        return lambda x, reference=None: x.sum()

    spec = MetricSpec(name="broken", factory=factory, description="returns a scalar")
    with pytest.raises(PluginError, match="broken"):
        rank_groups(groups(), spec)


def test_an_injected_registry_is_never_bypassed(monkeypatch):
    """Metric names (the ranking metric and the "auto" reference's entropy) are looked up in the registry passed
    in; the process-wide registry is not consulted, so a plugin registered only there is found."""
    from voldefense.hookspecs import hookimpl
    from voldefense.registry import Registry
    from voldefense.volumizer import Volumizer

    def l1(x, reference=None):
        return (x - reference).abs().flatten(1).mean(1)

    class Only:
        @hookimpl
        def voldefense_metrics(self):
            yield MetricSpec(name="only_here", factory=lambda: l1, description="a distance", distance=True)

    registry = Registry(load_entry_points=False)
    registry.register(Only(), origin="test")

    def unreachable(strict):
        raise AssertionError("the process-wide registry was used although one was injected")

    monkeypatch.setattr("voldefense.registry._cached_registry", unreachable)
    samples = torch.rand(2, 4, 3, 4, 4)
    perm, scores = rank_groups(samples, "only_here", registry=registry)
    assert perm.shape == scores.shape == (2, 4)
    volumizer = Volumizer(patch_size=4, metric="only_here", registry=registry)
    assert volumizer.entropy_spec is registry.get("metric", "entropy")
    assert volumizer(torch.rand(1, 3, 8, 8)).shape == (1, 3, 4, 4, 4)
