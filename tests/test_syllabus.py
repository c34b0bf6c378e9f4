"""The syllabus: batch ordering, dataset scoring in batches, the curriculum sampler and its pacing."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from voldefense.errors import ConfigError, TensorError, UsageError
from voldefense.ranking import rank_samples
from voldefense.registry import get_registry
from voldefense.syllabus import CurriculumSampler, curriculum_order, order_batch, score_dataset


def dataset(m: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (m, 3, 8, 8), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("metric", ["mi", "entropy", "mse", "kl"])
def test_batched_dataset_order_equals_ranking_the_whole_set_at_once(metric):
    images = dataset()
    images[17] = 128  # a flat image: the lowest-entropy reference
    perm = curriculum_order(images, metric, batch_size=7)
    expected, _ = rank_samples(images.float() / 255, metric, order="simple_first")
    assert perm.dtype == torch.long and torch.equal(perm, expected)


def test_order_batch_is_rank_samples_with_uint8_support():
    images = dataset(12)
    assert torch.equal(
        order_batch(images, "psnr", order="ascending"), rank_samples(images.float() / 255, "psnr")[0]
    )


def test_simple_first_puts_the_reference_first_for_distance_metrics():
    images = dataset()
    images[33] = 40
    for metric in ("mse", "psnr", "max_norm"):
        assert curriculum_order(images, metric, order="simple_first")[0] == 33
        assert curriculum_order(images, metric, order="complex_first")[-1] == 33


def test_score_dataset_from_a_dataloader_and_references():
    images = dataset(30)
    loader = DataLoader(TensorDataset(images, torch.zeros(30)), batch_size=8, shuffle=False)
    from_loader = score_dataset(loader, "mi", reference=5)
    from_tensor = score_dataset(images, "mi", reference=5, batch_size=4)
    torch.testing.assert_close(from_loader, from_tensor)
    mi = get_registry().get("metric", "mi").build()
    x = images.float() / 255
    torch.testing.assert_close(from_tensor, mi(x, x[5]))
    torch.testing.assert_close(score_dataset(images, "mi", reference=x[5]), from_tensor)
    with pytest.raises(UsageError, match="one-shot"):
        score_dataset(iter([images[:10], images[10:]]), "mi")
    with pytest.raises(ConfigError, match="out of range"):
        score_dataset(images, "mi", reference=30)
    with pytest.raises(ConfigError, match="batch_size"):
        score_dataset(images, "mi", batch_size=0)
    # A standalone metric needs one pass only, so a one-shot iterator is fine.
    h = score_dataset(iter([images[:10], images[10:]]), "entropy")
    torch.testing.assert_close(h, get_registry().get("metric", "entropy").build()(x))


def test_ordered_mode_serves_the_whole_ranking_every_epoch():
    order = torch.randperm(20)
    sampler = CurriculumSampler(order, mode="ordered")
    for epoch in (0, 5):
        sampler.set_epoch(epoch)
        assert list(sampler) == order.tolist() and len(sampler) == 20


def test_linear_pacing_grows_the_pool_of_simplest_samples():
    order = torch.randperm(100, generator=torch.Generator().manual_seed(1))
    sampler = CurriculumSampler(order, mode="pacing", start_fraction=0.2, pacing_epochs=4, seed=3)
    sizes = []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        served = list(sampler)
        sizes.append(len(served))
        assert len(served) == len(sampler)
        assert sorted(served) == sorted(order[: len(served)].tolist())  # exactly the simplest samples
    assert sizes == [20, 40, 60, 80, 100, 100]
    # Shuffled within the pool, reproducibly per (seed, epoch).
    sampler.set_epoch(4)
    first = list(sampler)
    assert first != order.tolist() and first == list(
        CurriculumSampler(order, start_fraction=0.2, pacing_epochs=4, seed=3).indices(4).tolist()
    )
    assert first != CurriculumSampler(order, start_fraction=0.2, pacing_epochs=4, seed=4).indices(4).tolist()


def test_step_pacing():
    sampler = CurriculumSampler(
        torch.arange(10), start_fraction=0.2, pacing_epochs=8, schedule="step", steps=2
    )
    assert [sampler.pool_size(e) for e in range(10)] == [2, 2, 2, 2, 6, 6, 6, 6, 10, 10]


def test_sampler_in_a_dataloader():
    images = dataset(16)
    order = curriculum_order(images, "entropy")
    sampler = CurriculumSampler(order, start_fraction=0.5, pacing_epochs=2)
    loader = DataLoader(TensorDataset(images), batch_size=4, sampler=sampler)
    assert sum(batch[0].shape[0] for batch in loader) == 8
    sampler.set_epoch(2)
    assert sum(batch[0].shape[0] for batch in loader) == 16


def test_sampler_errors():
    for kwargs in (
        {"mode": "random"},
        {"start_fraction": 0},
        {"start_fraction": 1.5},
        {"pacing_epochs": -1},
        {"schedule": "cosine"},
        {"steps": 0},
    ):
        with pytest.raises(ConfigError):
            CurriculumSampler(torch.arange(5), **kwargs)
    with pytest.raises(ConfigError, match="distinct"):
        CurriculumSampler([0, 1, 1])
    with pytest.raises(TensorError, match="1-D"):
        CurriculumSampler(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ConfigError, match="epoch"):
        CurriculumSampler(torch.arange(5)).set_epoch(-1)


def test_within_batch_order_does_not_change_a_mean_reduced_gradient():
    # The reason for a dataset-level sampler (documented in voldefense.syllabus and docs/syllabus.md).
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4), torch.nn.BatchNorm1d(4))
    x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 4, (8,))
    grads = []
    for perm in (torch.arange(8), torch.randperm(8)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[perm]), y[perm]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_stratified_pacing_admits_the_same_share_of_every_class():
    # A global ranking that puts all of class 0 first: unstratified pacing starts with class 0 alone.
    labels = torch.tensor([0] * 6 + [1] * 6)
    order = torch.arange(12)
    plain = CurriculumSampler(order, start_fraction=0.5, pacing_epochs=2)
    assert labels[plain.indices(0)].bincount(minlength=2).tolist() == [6, 0]
    strat = CurriculumSampler(order, start_fraction=0.5, pacing_epochs=2, labels=labels, stratify=True)
    served = strat.indices(0)
    assert labels[served].bincount().tolist() == [3, 3]
    assert sorted(served.tolist()) == [0, 1, 2, 6, 7, 8]  # each class's own simplest half, in rank order
    assert len(strat) == 6 and strat.pool_size(2) == 12 and sorted(strat.indices(2).tolist()) == list(range(12))
    assert strat.indices(0).tolist() == served.tolist()  # deterministic per (seed, epoch)


def test_stratify_needs_labels_covering_the_order():
    with pytest.raises(UsageError, match="needs labels"):
        CurriculumSampler(torch.arange(4), stratify=True)
    with pytest.raises(TensorError, match="one class per sample"):
        CurriculumSampler(torch.arange(4), labels=torch.zeros(3, dtype=torch.long), stratify=True)
