"""PatchCleanser: the mask-set formula, double masking on hand-computed cases, the certificate's soundness
against an exhaustive patch search, the straight-through view, refusals."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from voldefense.defenses.base import TrainBudget
from voldefense.defenses.cleanser import DoubleMasking, PatchCleanserDefense
from voldefense.defenses.mask_sets import build_mask_set, covered_length
from voldefense.errors import ConfigError
from voldefense.testing import tiny_cnn


class MarkCounter(nn.Module):
    """Predicts the number of visible pixels equal to 1.0 (capped at K - 1): a classifier whose every masked
    prediction is known by hand."""

    def __init__(self, k: int = 3):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = (x[:, 0] == 1.0).flatten(1).sum(1).clamp(max=self.k - 1)
        return F.one_hot(count, self.k).float()


def test_mask_set_follows_the_paper_formula() -> None:
    # CIFAR 32x32, 2% patch (5 px), 6 masks per axis: stride ceil(28 / 6) = 5, mask 5 + 5 - 1 = 9.
    ms = build_mask_set((32, 32), 5, masks_per_axis=6)
    assert (ms.rows.stride, ms.rows.mask, ms.rows.starts) == (5, 9, (0, 5, 10, 15, 20, 23))
    assert ms.count == 36 and ms.covered_side == 5
    masks = ms.masks()
    assert masks.shape == (36, 1, 32, 32) and int((masks[0] == 0).sum()) == 81
    # Every 5x5 placement lies inside some mask (exhaustive), and some 6x6 placement inside none.
    def inside_one(side: int) -> bool:
        return all(
            any(bool((masks[m, 0, r : r + side, c : c + side] == 0).all()) for m in range(36))
            for r, c in itertools.product(range(33 - side), repeat=2)
        )

    assert inside_one(5) and not inside_one(6)
    assert covered_length(12, 6, [0, 4, 6]) == 3


@pytest.mark.parametrize(
    ("kwargs", "image", "match"),
    [
        ({"patch_area": 0.5}, (8, 32), "cover the whole image height"),
        ({"patch_area": 0.81, "mask_stride": 2}, (10, 10), "cover the whole image"),
        ({"patch_area": 0.0625, "mask_size": 5, "mask_stride": 3}, (20, 20), "at most 3 pixels.*mask_size >= 7"),
    ],
)
def test_refuses_what_it_cannot_certify_in_one_line(kwargs, image, match) -> None:
    defense = PatchCleanserDefense(**kwargs)
    with pytest.raises(ConfigError, match=match) as err:
        defense.check_image_shape((3, *image))
    assert "\n" not in str(err.value) and str(err.value).startswith("patch_cleanser:")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch_area": 0.0}, "patch_area"),
        ({"masks_per_axis": 1}, "masks_per_axis"),
        ({"mask_stride": 0}, "mask_stride"),
        ({"mask_value": 2.0}, "mask_value"),
        ({"train_on_masked": "yes"}, "train_on_masked"),
    ],
)
def test_bad_options(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        PatchCleanserDefense(**kwargs)


def test_double_masking_hand_computed_cases() -> None:
    """12x12 images, 3-px patches, 3 masks per axis: stride 4, masks of 6 px at 0, 4, 6 (9 masks).

    - clean (no 1.0 pixel): every masked image says 0 → case I, 0; 9 passes; certified for label 0.
    - one mark at (5,5): the 4 masks covering it say 0, the other 5 say 1 (majority 1); each covering mask's
      second round still hides the mark → all 0 → case II, 0; 9 + 4·9 passes; not certified (pairs that
      leave the mark visible say 1).
    - marks at (0,0) and (11,11): 7 masks see both (2), one hides each (1); each disagreer's second round
      includes the mask hiding the other mark (0 ≠ 1) → case III, majority 2. Second rounds run 3 masks at a
      time and stop at the first dissent: mask 0 (hiding (0,0)) meets mask 8 in its last chunk (9 passes), mask
      8 meets mask 0 in its first (3 passes): 9 + 9 + 3 passes.
    """
    ms = build_mask_set((12, 12), 3, masks_per_axis=3)
    assert ms.rows.starts == (0, 4, 6) and ms.rows.mask == 6 and ms.count == 9
    cleanser = DoubleMasking(MarkCounter(), ms, mask_value=0.5)
    x = torch.full((3, 1, 12, 12), 0.2)
    x[1, 0, 5, 5] = 1.0
    x[2, 0, 0, 0] = x[2, 0, 11, 11] = 1.0
    assert MarkCounter()(x).argmax(1).tolist() == [0, 1, 2]  # undefended
    for i in range(3):
        cleanser.reset_pass_count()
        assert cleanser.predict(x[i : i + 1]).item() == [0, 0, 2][i]
        assert cleanser.passes_per_image == [9, 45, 21][i]
    with torch.no_grad():
        assert torch.equal(cleanser(x), F.one_hot(torch.tensor([0, 0, 2]), 3).float())
    assert cleanser.certify(x, torch.tensor([0, 0, 2])).tolist() == [True, False, False]


def colour_task(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class y raises colour channel y over the whole image (robust to masking), with pixel noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.5 + 0.2 * torch.randn(n, 3, size, size, generator=g)
    x[torch.arange(n), y] += 0.1
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def trained():
    """PatchCleanser (9 masks, 3-px patches on 12x12 images) around a tiny CNN trained on double-masked images."""
    x, y = colour_task(384, 12, seed=0)
    torch.manual_seed(0)
    defense = PatchCleanserDefense(patch_area=9 / 144, masks_per_axis=3, train_on_masked=True)
    return defense.fit(
        lambda c: tiny_cnn(3, in_channels=c), x, y, TrainBudget(epochs=4, batch_size=32, lr=1e-2, seed=0)
    )


def test_certificate_sound_against_exhaustive_patch_search(trained) -> None:
    """Every correctly classified test image is attacked with a 3x3 patch at every location, painted in each
    other class's pure colour (the strongest content for this task: it raises that class's channel and lowers
    the others). No certified image may be flipped; some uncertified one must be (else the search could not tell
    a sound certificate from an unsound one)."""
    size, side = 12, 3
    defended = trained
    cleanser = defended.model
    cleanser.max_batch = 8192
    xt, yt = colour_task(48, size, seed=1)
    cert = defended.certify(xt, yt, [side])[side]
    clean = cleanser.predict(xt) == yt
    assert cert.any() and (clean & ~cert).any(), "the test needs certified and uncertified correct images"
    places = list(itertools.product(range(size - side + 1), repeat=2))
    robust = clean.clone()
    for i in clean.nonzero().flatten().tolist():
        advs = []
        for (top, left), k in itertools.product(places, [k for k in range(3) if k != yt[i]]):
            adv = xt[i].clone()
            adv[:, top : top + side, left : left + side] = 0.0
            adv[k, top : top + side, left : left + side] = 1.0
            advs.append(adv)
        robust[i] &= bool((cleanser.predict(torch.stack(advs)) == yt[i]).all())
    assert not (cert & ~robust).any(), "a certified image was flipped"
    assert (clean & ~robust).any(), "the search never succeeded: it cannot tell a sound certificate from a bad one"


def test_certified_images_survive_the_patch_pgd_plugin(trained) -> None:
    """Our adaptive patch attack (`patch_pgd` with a location search, through the `soft_masks` view) never flips
    a certified image."""
    from voldefense.registry import get_registry

    cleanser = trained.model
    xt, yt = colour_task(48, 12, seed=1)
    cert = trained.certify(xt, yt, [3])[3]
    attack = get_registry().get("attack", "patch_pgd").build(steps=20, location="search", candidates=4)
    result = attack.run(trained.model_for_attack("soft_masks"), xt, yt, 9 / 144, seed=0)
    assert all(side == [3, 3] for side in result.extra["patch_size"])
    flipped = cleanser.predict(result.adversarial) != yt
    assert cert.any() and not (cert & flipped).any(), "a certified image was flipped"


def test_soft_view_is_straight_through_and_sides_beyond_the_mask_set_are_left_out() -> None:
    x, y = colour_task(64, 12, seed=2)
    f = tiny_cnn(3).eval()
    defended = PatchCleanserDefense(patch_area=9 / 144, masks_per_axis=3).fit(
        lambda c: tiny_cnn(3, in_channels=c), x, y, TrainBudget(epochs=1), base_model=f
    )
    cleanser = defended.model
    assert defended.view_names == ("soft_masks",) and defended.info["reuses_undefended_model"]
    assert defended.info["masks"] == 9 and defended.info["forward_passes"]["certificate"] == 45
    xi = x[:4].clone().requires_grad_(True)
    out = cleanser(xi)
    with torch.no_grad():
        assert torch.equal(out, cleanser(x[:4]))  # the same forward with and without gradient
    assert torch.equal(out.argmax(1), cleanser.predict(x[:4]))
    out[:, 0].sum().backward()
    xs = x[:4].clone().requires_grad_(True)
    masks = cleanser.masks
    soft = torch.stack([torch.softmax(f(xs * m + 0.5 * (1 - m)), 1) for m in masks]).mean(0)
    soft[:, 0].sum().backward()
    torch.testing.assert_close(xi.grad, xs.grad)
    certs = defended.certify(x[:4], y[:4], [2, 3, 4])
    assert set(certs) == {2, 3}  # the 9-mask set covers 3-px squares; 4 px is not certified, so left out
