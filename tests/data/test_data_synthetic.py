
import numpy as np
import pytest
import torch
from torch import nn

from voldefense.data import ArrayDataset, load_dataset
from voldefense.data.synthetic import CLASSES, generate, load_synthetic
from voldefense.errors import ConfigError
from voldefense.testing import accuracy, fit


def test_shapes_dtypes_and_class_names():
    ds = load_dataset("synthetic", split="train", train_size=50, seed=1)
    assert isinstance(ds, ArrayDataset)
    assert ds.images.shape == (50, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and int(ds.labels.max()) <= 9
    assert ds.classes == list(CLASSES) and len(set(CLASSES)) == 10
    image, label = ds[0]
    assert image.dtype == torch.float32 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def test_deterministic_given_seed_and_different_across_seeds_and_splits():
    a = load_dataset("synthetic", split="train", train_size=30, seed=5)
    b = load_dataset("synthetic", split="train", train_size=30, seed=5)
    c = load_dataset("synthetic", split="train", train_size=30, seed=6)
    t = load_dataset("synthetic", split="test", test_size=30, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.images, t.images)


def test_a_larger_size_extends_the_set_instead_of_reshuffling_it():
    small_x, small_y = generate(300, seed=2)
    large_x, large_y = generate(700, seed=2)
    assert torch.equal(large_x[:300], small_x) and torch.equal(large_y[:300], small_y)


def test_classes_are_balanced():
    _, y = generate(2560, seed=0)  # whole chunks: counts within one of each other
    counts = torch.bincount(y, minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    _, y4 = generate(1000, seed=0, num_classes=4)
    assert torch.bincount(y4, minlength=4).min() >= 200


def test_image_size_and_num_classes_options():
    ds = load_dataset("synthetic", split="test", test_size=20, image_size=48, num_classes=3)
    assert ds.images.shape == (20, 3, 48, 48)
    assert ds.classes == ["circle", "square", "triangle"] and int(ds.labels.max()) <= 2


@pytest.mark.parametrize(
    "options, match",
    [
        ({"train_size": 0}, "train_size"),
        ({"test_size": "many"}, "test_size"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"image_size": 8}, "image_size"),
        ({"num_classes": 11}, "num_classes"),
    ],
)
def test_bad_options_are_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset("synthetic", split="train", **options)


def test_images_are_not_blank_or_constant():
    x, _ = generate(100, seed=0)
    x = x.float()
    # Every image has real content: spread of pixel values well above pure noise.
    assert float(x.flatten(1).std(1).min()) > 10


def test_colour_alone_does_not_reveal_the_class():
    # Nearest class-centroid on per-image mean colour, fitted on one set and scored on another: near chance.
    xtr, ytr = generate(2000, seed=0, split="train")
    xte, yte = generate(1000, seed=0, split="test")
    ftr, fte = xtr.float().mean((2, 3)), xte.float().mean((2, 3))
    centroids = torch.stack([ftr[ytr == k].mean(0) for k in range(10)])
    pred = torch.cdist(fte, centroids).argmin(1)
    assert float((pred == yte).float().mean()) < 0.2


@pytest.mark.slow
def test_a_small_cnn_learns_the_task():
    torch.manual_seed(0)
    ds_train = load_dataset("synthetic", split="train", train_size=3000)
    ds_test = load_dataset("synthetic", split="test", test_size=500)
    x, y = ds_train.tensors()
    xt, yt = ds_test.tensors()

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    w = 16
    model = nn.Sequential(
        *block(3, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 10),
    )  # fmt: skip
    fit(model, x, y, epochs=6, lr=3e-3)
    # Chance is 0.1; a linear model on colour is at chance (test above); this reaches ~0.7 in ~10 s.
    assert accuracy(model, xt, yt) > 0.5


def test_tiled_layout_puts_a_scene_of_the_class_in_every_quadrant():
    from voldefense.data.synthetic import _render, _tiled

    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    y = np.array([0, 3])
    tiled = _tiled(rng_a, y, 32)
    scenes = _render(rng_b, np.repeat(y, 4), 16)  # the same draws: quadrant q of image i is scene 4 i + q
    assert tiled.shape == (2, 3, 32, 32)
    for i in range(2):
        for q, (r, c) in enumerate(((0, 0), (0, 16), (16, 0), (16, 16))):
            np.testing.assert_array_equal(tiled[i, :, r : r + 16, c : c + 16], scenes[4 * i + q])
    data = load_synthetic("train", train_size=20, layout="tiled")
    again = load_synthetic("train", train_size=20, layout="tiled")
    assert torch.equal(data.images, again.images)
    assert not torch.equal(data.images, load_synthetic("train", train_size=20).images)


def test_layout_option_errors():
    with pytest.raises(ConfigError, match="layout must be one of"):
        load_synthetic("train", train_size=4, layout="grid")
    with pytest.raises(ConfigError, match="even image_size >= 32"):
        load_synthetic("train", train_size=4, layout="tiled", image_size=17)
