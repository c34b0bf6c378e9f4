import pytest
import torch

from voldefense.data import ArrayDataset
from voldefense.errors import DataError


def _dataset(n: int = 6) -> ArrayDataset:
    images = torch.arange(n * 3 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(n, 3, 2, 2)
    return ArrayDataset(images, torch.arange(n) % 3, ["a", "b", "c"])


def test_items_are_float_images_in_unit_range_and_int_labels():
    ds = _dataset()
    image, label = ds[4]
    assert image.dtype == torch.float32 and image.shape == (3, 2, 2)
    assert torch.equal(image, ds.images[4].float() / 255)
    assert isinstance(label, int) and label == 1
    assert len(ds) == 6 and ds.classes == ["a", "b", "c"]


def test_getitem_does_not_mutate_the_stored_images():
    ds = _dataset()
    before = ds.images.clone()
    ds[0][0].mul_(0)
    assert torch.equal(ds.images, before)


def test_subset_keeps_order_and_classes():
    ds = _dataset()
    sub = ds.subset([5, 0, 2])
    assert isinstance(sub, ArrayDataset)
    assert sub.labels.tolist() == [2, 0, 2]
    assert torch.equal(sub.images[0], ds.images[5])
    assert sub.classes == ds.classes
    sub_t = ds.subset(torch.tensor([1]))
    assert len(sub_t) == 1


def test_tensors_returns_whole_dataset():
    images, labels = _dataset().tensors()
    assert images.shape == (6, 3, 2, 2) and images.dtype == torch.float32
    assert float(images.max()) <= 1.0 and labels.dtype == torch.int64


@pytest.mark.parametrize(
    "images, labels, classes, match",
    [
        (torch.zeros(2, 3, 2, 2), torch.zeros(2, dtype=torch.int64), ["a"], "uint8"),
        (torch.zeros(2, 2, 2, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), ["a"], "uint8"),
        (torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32), ["a"], "int64"),
        (torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ["a"], "match"),
        (torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"], r"\[0, 1\]"),
        (torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, -1]), ["a", "b"], r"\[0, 1\]"),
        (torch.zeros(2, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 0]), [], "class"),
    ],
)
def test_invalid_arrays_raise_data_error(images, labels, classes, match):
    with pytest.raises(DataError, match=match):
        ArrayDataset(images, labels, classes)


def test_works_with_a_dataloader():
    loader = torch.utils.data.DataLoader(_dataset(), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 2, 2) and x.dtype == torch.float32 and y.tolist() == [0, 1, 2, 0]
