"""Training batches: device-held uint8 batches equal the DataLoader's, labels from any dataset, per-class shares."""

from __future__ import annotations

import torch
from torch.utils.data import Subset, TensorDataset

from voldefense.data.arrays import ArrayDataset
from voldefense.train_data import DeviceBatches, batches, dataset_labels, in_memory_tensors
from voldefense.training import ShuffleSampler, seen_share


def array_set(n: int = 10) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n) % 3, ["a", "b", "c"])


def test_device_batches_equal_the_dataloader_batches():
    data, sampler = array_set(), ShuffleSampler(10, seed=2)
    fast = batches(data, sampler, batch_size=4, device=torch.device("cpu"), on_device="auto")
    slow = batches(data, sampler, batch_size=4, device=torch.device("cpu"), on_device=False)
    assert isinstance(fast, DeviceBatches) and len(fast) == len(slow) == 3
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        pairs = list(zip(fast, slow, strict=True))
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_datasets_without_tensors_use_a_dataloader():
    data = TensorDataset(torch.rand(6, 3, 4, 4), torch.arange(6))
    assert in_memory_tensors(data) is None
    loader = batches(data, ShuffleSampler(6), batch_size=4, device=torch.device("cpu"), on_device=True)
    assert sum(len(y) for _, y in loader) == 6


def test_dataset_labels_from_attributes_subsets_or_items():
    data = array_set()
    assert dataset_labels(data).tolist() == (torch.arange(10) % 3).tolist()
    assert dataset_labels(Subset(data, [4, 5])).tolist() == [1, 2]
    assert dataset_labels(TensorDataset(torch.rand(3, 1), torch.tensor([2, 0, 1]))).tolist() == [2, 0, 1]


def test_seen_share_reports_the_class_mix_of_an_epoch():
    share = seen_share([2.0, 0.0, 1.0], torch.tensor([4.0, 4.0, 2.0], dtype=torch.float64), 3)
    assert share == {"train_fraction": 0.3, "train_class_share_min": 0.0, "train_class_share_max": 0.5}
