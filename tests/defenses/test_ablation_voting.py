"""Derandomized smoothing: our torch ablation voting against ART's PyTorchDeRandomizedSmoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from voldefense.defenses.ablation import (
    AblationVoting,
    DerandomizedSmoothingDefense,
    ablate,
    ablation_masks,
    changed_positions,
    num_positions,
    to_art,
)
from voldefense.defenses.base import TrainBudget
from voldefense.errors import ConfigError
from voldefense.testing import make_toy_images, tiny_cnn

SIZE = 16


def make_model(in_channels: int) -> nn.Module:
    torch.manual_seed(0)
    return tiny_cnn(4, in_channels=in_channels)


@pytest.fixture(scope="module")
def data():
    return make_toy_images(256, image_size=SIZE, seed=0), make_toy_images(48, image_size=SIZE, seed=1)


@pytest.fixture(scope="module", params=[("column", 4), ("block", 6)], ids=["column", "block"])
def defended(request, data):
    (x, y), _ = data
    ablation_type, size = request.param
    defense = DerandomizedSmoothingDefense(ablation_type=ablation_type, ablation_size=size)
    return defense.fit(make_model, x, y, TrainBudget(epochs=8, batch_size=32, lr=3e-3, seed=0))


@pytest.mark.parametrize("ablation_type", ["column", "row", "block"])
def test_masks_equal_art_ablators(ablation_type) -> None:
    from art.estimators.certification.derandomized_smoothing.ablators.pytorch import (
        BlockAblatorPyTorch,
        ColumnAblatorPyTorch,
    )

    h, w, k = 6, 7, 3
    x = torch.rand(1, 2, h, w)
    common = dict(
        channels_first=True, mode="CNN", to_reshape=False, algorithm="levine2020", device_type="cpu"
    )
    if ablation_type == "block":
        art = BlockAblatorPyTorch(ablation_size=k, **common)
    else:
        art = ColumnAblatorPyTorch(ablation_size=k, ablation_mode=ablation_type, **common)
    for pos in range(num_positions(ablation_type, (h, w))):
        if ablation_type == "block":
            ref = art.forward(x.numpy().copy(), row_pos=pos // w, column_pos=pos % w)
        else:
            ref = art.forward(x.numpy().copy(), column_pos=pos)
        ours = ablate(x, ablation_masks(ablation_type, k, (h, w), torch.tensor([pos])))
        assert torch.equal(ours, ref), f"position {pos}"


def test_vote_counts_and_certified_accuracy_equal_art(defended, data) -> None:
    _, (xt, yt) = data
    voting = defended.model
    counts = voting.vote_counts(xt)
    art = to_art(voting, (3, SIZE, SIZE), 4)
    np.testing.assert_array_equal(counts.numpy(), art.predict(xt.numpy()))
    certs = defended.certify(xt, yt, [1, 2, 4])
    for side, cert in certs.items():
        clean_acc, cert_acc = art.eval_and_certify(
            xt.numpy(), yt.numpy(), size_to_certify=side, verbose=False
        )
        assert float(cert.float().mean()) == pytest.approx(float(cert_acc))
        assert float((counts.argmax(1) == yt).float().mean()) == pytest.approx(float(clean_acc))
    # larger patches can only lose certificates
    assert (certs[4] <= certs[2]).all() and (certs[2] <= certs[1]).all()


def test_smoothed_model_is_better_than_chance_and_certifies_some(defended, data) -> None:
    _, (xt, yt) = data
    with torch.no_grad():
        acc = float((defended.model(xt).argmax(1) == yt).float().mean())
    assert acc > 0.4  # 4 classes
    assert defended.certify(xt, yt, [1])[1].any()


def test_forward_is_exact_counts_with_soft_vote_gradient(defended, data) -> None:
    _, (xt, _) = data
    voting: AblationVoting = defended.model_for_attack("soft_votes")
    x = xt[:3].clone().requires_grad_(True)
    out = voting(x)
    assert torch.equal(out.detach(), voting.vote_counts(xt[:3]).float())
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])
    (out * weights).sum().backward()
    # reference: gradient of the summed softmax over every position, without chunking or checkpointing
    x2 = xt[:3].clone().requires_grad_(True)
    total = num_positions(voting.ablation_type, (SIZE, SIZE))
    masks = ablation_masks(voting.ablation_type, voting.ablation_size, (SIZE, SIZE), torch.arange(total))
    soft = sum(torch.softmax(voting.base(ablate(x2, m.expand(3, -1, -1, -1))), 1) for m in masks)
    (soft * weights).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-6)
    assert x.grad.abs().sum() > 0


def test_chunking_does_not_change_votes(defended, data) -> None:
    _, (xt, _) = data
    voting = defended.model
    small = AblationVoting(voting.base, voting.ablation_type, voting.ablation_size, max_batch=7)
    assert torch.equal(small.vote_counts(xt[:10]), voting.vote_counts(xt[:10]))


def test_changed_positions() -> None:
    assert changed_positions("column", 4, 5, (32, 32)) == 8
    assert changed_positions("row", 4, 5, (32, 20)) == 8
    assert changed_positions("block", 12, 5, (32, 32)) == 16 * 16
    assert changed_positions("column", 30, 10, (32, 32)) == 32  # capped at the number of positions


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ablation_type": "diagonal"}, "ablation_type"),
        ({"ablation_size": 0}, "ablation_size"),
        ({"threshold": 0.0}, "threshold"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_bad_options(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        DerandomizedSmoothingDefense(**kwargs)


def test_ablation_larger_than_image_is_a_config_error() -> None:
    voting = AblationVoting(nn.Identity(), "column", 20)
    with pytest.raises(ConfigError, match="exceeds the image"):
        voting.vote_counts(torch.rand(1, 3, 16, 16))
