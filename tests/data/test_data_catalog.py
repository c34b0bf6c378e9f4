import pytest

from voldefense.data import (
    DATASETS,
    REQUIRED,
    ArrayDataset,
    check_options,
    dataset_options,
    list_datasets,
    load_dataset,
)
from voldefense.errors import ConfigError, UnknownPluginError, VoldefenseError


def test_catalog_lists_the_five_datasets_with_their_options():
    assert list_datasets() == ["cifar10", "cifar100", "imagefolder", "npz", "synthetic"] == sorted(DATASETS)
    assert dataset_options("synthetic") == {"train_size", "test_size", "seed", "image_size", "num_classes", "layout"}
    assert dataset_options("cifar10") == {"root", "download"}
    assert dataset_options("cifar100") == {"root", "download", "labels"}
    assert dataset_options("npz") == {"path", "train_path", "test_path", "classes", "num_classes"}
    assert dataset_options("imagefolder") == {"root", "image_size"}
    assert DATASETS["cifar10"].options["download"] is False
    assert DATASETS["cifar10"].options["root"] is REQUIRED
    assert DATASETS["imagefolder"].required == {"root"}
    assert all(info.description for info in DATASETS.values())


def test_unknown_dataset_lists_available_names():
    with pytest.raises(VoldefenseError) as err:
        load_dataset("cifar", split="train")
    assert isinstance(err.value, UnknownPluginError)
    message = str(err.value)
    for name in DATASETS:
        assert name in message
    assert "did you mean" in message
    with pytest.raises(UnknownPluginError):
        dataset_options("mnist")


def test_unknown_options_are_named_with_the_accepted_ones():
    with pytest.raises(
        ConfigError, match=r"unknown option\(s\) colour, sized; accepted options: .*train_size"
    ):
        load_dataset("synthetic", split="train", sized=3, colour=1)


def test_missing_required_option_is_a_config_error_before_loading():
    with pytest.raises(ConfigError, match="needs option.*root"):
        check_options("cifar10", {})
    with pytest.raises(ConfigError, match="root"):
        load_dataset("imagefolder", split="train")


@pytest.mark.parametrize("split", ["val", "Train", None])
def test_bad_split_is_a_config_error(split):
    with pytest.raises(ConfigError, match="split"):
        load_dataset("synthetic", split=split)


def test_load_dataset_returns_array_dataset_for_synthetic():
    ds = load_dataset("synthetic", split="test", test_size=12, seed=3)
    assert isinstance(ds, ArrayDataset) and len(ds) == 12 and len(ds.classes) == 10
