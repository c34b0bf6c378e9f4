"""Certified bound for per-patch voting: the counting, the tie rules, and the bound against real attacks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from voldefense.errors import ConfigError
from voldefense.evaluation.certify import (
    certified_accuracy,
    certify_majority_vote,
    certify_votes,
    max_patches_touched,
    square_side_for_area,
    vote_counts,
)


def brute_force_touched(s: int, p: tuple[int, int], size: tuple[int, int]) -> int:
    """Enumerate every placement of the square and every grid patch (no pad: the remainder votes nowhere)."""
    (ph, pw), (h, w) = p, size
    best = 0
    for top in range(h - s + 1):
        for left in range(w - s + 1):
            n = 0
            for r in range(h // ph):
                for c in range(w // pw):
                    overlap_r = top < (r + 1) * ph and r * ph < top + s
                    overlap_c = left < (c + 1) * pw and c * pw < left + s
                    n += overlap_r and overlap_c
            best = max(best, n)
    return best


@pytest.mark.parametrize(
    ("s", "p", "size"),
    [
        (1, 4, 16),
        (2, 4, 16),
        (4, 4, 16),
        (5, 4, 16),
        (9, 4, 16),
        (16, 4, 16),
        (3, 8, 32),
        (8, 8, 32),
        (9, 8, 32),
        (3, 5, 17),
        (12, 5, 17),
        (6, (4, 6), (18, 20)),
        (1, (3, 2), (7, 9)),
    ],
)
def test_max_patches_touched_matches_enumeration(s, p, size) -> None:
    pp = p if isinstance(p, tuple) else (p, p)
    ss = size if isinstance(size, tuple) else (size, size)
    got = max_patches_touched(s, p, size)
    assert got == brute_force_touched(s, pp, ss)
    # never above the closed-form bound of the issue
    assert got <= (math.ceil((s - 1) / pp[0]) + 1) * (math.ceil((s - 1) / pp[1]) + 1)


def test_max_patches_touched_closed_form_in_the_interior() -> None:
    # far from the borders the enumeration reaches the closed form (ceil((s-1)/p) + 1)^2
    for s in range(1, 20):
        assert max_patches_touched(s, 4, 64) == (math.ceil((s - 1) / 4) + 1) ** 2


def test_max_patches_touched_pad_bound_is_offset_free() -> None:
    # 18 px with 8 px patches padded to 3 patches per axis: a 2-px square can straddle a border: 2 per axis
    assert max_patches_touched(2, 8, 18, pad=True) == 4
    assert max_patches_touched(18, 8, 18, pad=True) == 9


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 4, 16), "positive"),
        ((17, 4, 16), "does not fit"),
        ((2, 32, 16), "larger than the image"),
        ((2, (4, 4, 4), 16), "pair"),
    ],
)
def test_max_patches_touched_rejects_bad_values(args, match) -> None:
    with pytest.raises(ConfigError, match=match):
        max_patches_touched(*args)


def test_square_side_for_area_rounds_up() -> None:
    assert square_side_for_area(0.04, 32) == 7  # sqrt(0.04 * 1024) = 6.4 -> 7
    assert square_side_for_area(0.0625, 32) == 8  # exact square stays exact
    assert square_side_for_area(1.0, 32, 16) == 16
    assert square_side_for_area(1e-6, 32) == 1
    with pytest.raises(ConfigError, match="area fraction"):
        square_side_for_area(0.0, 32)


def test_certify_votes_margin_and_ties() -> None:
    counts = torch.tensor([[9, 3, 0], [7, 3, 0], [3, 7, 0], [5, 5, 0], [0, 6, 2], [2, 6, 0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    # gaps to the runner-up: 6, 4, 4, 0, 4, 4; T = 2 -> need > 4 (or == 4 and y below the runner-up)
    conservative = certify_votes(counts, labels, 2)
    assert conservative.tolist() == [True, False, False, False, False, False]
    lowest = certify_votes(counts, labels, 2, tie_rule="lowest_index")
    # rows 1 (y=0 < 1) and 4 (y=1 < 2) win the tie after the attack; rows 2, 5 lose it to class 0
    assert lowest.tolist() == [True, True, False, False, True, False]
    assert certify_votes(counts, labels, 0).tolist() == [True, True, True, False, True, True]


def test_certify_votes_checks_every_runner_up() -> None:
    # y = 1 ties at the bound with class 2 (above it) and class 0 (below it): class 0 would win the tie, so
    # not certified. ART's rule looks at one kthvalue runner-up only and can miss class 0.
    counts = torch.tensor([[2, 6, 2, 2]])
    assert not certify_votes(counts, torch.tensor([1]), 2, tie_rule="lowest_index").item()
    assert certify_votes(counts, torch.tensor([1]), 1, tie_rule="lowest_index").item()
    # two voters moving from class 1 to class 0 give [4, 4, 2, 2]: argmax (lowest index) is 0 -> flipped
    assert int(torch.tensor([4, 4, 2, 2]).argmax()) == 0


def test_certify_votes_sound_by_exhaustive_vote_changes() -> None:
    """Enumerate every way T voters can change their (single) vote on small vote vectors."""
    g = torch.Generator().manual_seed(0)
    k, voters = 3, 7
    for _ in range(60):
        votes = torch.randint(0, k, (voters,), generator=g)
        label = int(torch.randint(0, k, (1,), generator=g))
        counts = torch.bincount(votes, minlength=k)[None]
        for t in range(0, 3):
            cert = certify_votes(counts, torch.tensor([label]), t, tie_rule="lowest_index").item()
            if not cert:
                continue
            # worst case: any t voters switch to any class
            for idx in (
                torch.combinations(torch.arange(voters), t) if t else [torch.tensor([], dtype=torch.long)]
            ):
                for new in torch.cartesian_prod(*[torch.arange(k)] * t) if t else [torch.tensor([])]:
                    changed = votes.clone()
                    changed[idx] = new.long().reshape(-1)
                    assert int(torch.bincount(changed, minlength=k).argmax()) == label


def test_certify_majority_vote_shape_and_values() -> None:
    logits = torch.zeros(2, 16, 3)
    logits[0, :, 0] = 1.0  # all 16 patches vote 0
    logits[1, :10, 1] = 1.0  # 10 votes for 1, 6 for 0
    labels = torch.tensor([0, 1])
    # s = 4 on 4-px patches: up to 4 patches touched -> margin must exceed 8
    assert certify_majority_vote(logits, labels, 4, 4, 16).tolist() == [True, False]
    assert certify_majority_vote(logits, labels, 1, 4, 16).tolist() == [True, True]  # 1 patch: margin 4 > 2
    assert vote_counts(logits).tolist() == [[16, 0, 0], [6, 10, 0]]
    with pytest.raises(ConfigError, match="one vote per grid patch"):
        certify_majority_vote(logits[:, :15], labels, 4, 4, 16)
    assert certified_accuracy(torch.tensor([True, False])) == 0.5


# -- the bound against actual attacks ------------------------------------------------------------------------


class PatchVoter(nn.Module):
    """Per-patch voting classifier: every p×p patch is classified alone by the same small network (what g with
    depth_kernel 1 computes per depth slice); the image prediction is the majority vote, ties to the lowest
    class index."""

    def __init__(self, patch: int, net: nn.Module):
        super().__init__()
        self.patch = patch
        self.net = net

    def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        p = self.patch
        cols = F.unfold(x, kernel_size=p, stride=p)  # (B, C*p*p, N)
        n = cols.shape[-1]
        patches = cols.transpose(1, 2).reshape(b * n, c, p, p)
        return self.net(patches).reshape(b, n, -1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return vote_counts(self.patch_logits(x)).argmax(1)


def square_mask(top: int, left: int, s: int, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(1, 1, h, w)
    m[..., top : top + s, left : left + s] = 1.0
    return m


def colour_task(n: int, size: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class y raises channel y; per-pixel noise makes some patches vote wrongly, so margins vary."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    x = 0.5 + 0.25 * torch.randn(n, k, size, size, generator=g)
    x[torch.arange(n), y] += 0.12
    return x.clamp(0, 1), y


def test_bound_holds_against_exact_worst_case_attack_on_linear_voter() -> None:
    """Linear per-patch logits (mean of each channel): for a fixed square, painting it the colour e_c is the
    optimal attack towards class c (it maximises logit c and minimises every other in every touched patch).
    Exhausting every placement and every c gives the exact worst case; no certified image may flip."""
    size, p, k = 16, 4, 3
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = PatchVoter(p, net)
    x, y = colour_task(48, size, k, seed=1)
    clean = model.predict(x)
    flipped_uncertified = 0
    for s in (2, 3, 5):
        cert = certify_majority_vote(model.patch_logits(x), y, s, p, size)
        assert cert.any(), "the test needs certified images to be meaningful"
        robust = clean == y
        for top in range(size - s + 1):
            for left in range(size - s + 1):
                m = square_mask(top, left, s, size, size)
                for c in range(k):
                    colour = F.one_hot(torch.tensor(c), k).float().reshape(1, k, 1, 1)
                    robust &= model.predict(x * (1 - m) + colour * m) == y
        assert not (cert & ~robust).any(), "a certified image was flipped"
        flipped_uncertified += int((~robust & (clean == y)).sum())
    assert flipped_uncertified > 0, "the attack never succeeds: it cannot tell a loose bound from a tight one"


def test_bound_holds_against_pgd_on_every_placement_of_trained_voter() -> None:
    """A small trained per-patch CNN, attacked with PGD inside the square at every placement."""
    from voldefense.testing import fit

    size, p, k, s = 16, 4, 3, 4
    net = nn.Sequential(
        nn.Conv2d(k, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, k)
    )
    model = PatchVoter(p, net)
    x, y = colour_task(256, size, k, seed=2)
    fit(
        model,
        x,
        y,
        epochs=6,
        lr=1e-2,
        forward=lambda m, xb: m.patch_logits(xb).flatten(0, 1),
        loss_fn=lambda logits, labels: F.cross_entropy(
            logits, labels.repeat_interleave(logits.shape[0] // len(labels))
        ),
    )
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    xt, yt = x[:24], y[:24]
    cert = certify_majority_vote(model.patch_logits(xt), yt, s, p, size)
    clean = model.predict(xt) == yt
    assert cert.any() and (clean & ~cert).any()
    places = [(top, left) for top in range(size - s + 1) for left in range(size - s + 1)]
    masks = torch.cat([square_mask(top, left, s, size, size) for top, left in places])  # (P, 1, H, W)
    robust = clean.clone()
    for i in range(len(xt)):
        base = xt[i : i + 1].expand(len(places), -1, -1, -1)
        delta = torch.rand(base.shape, generator=torch.Generator().manual_seed(i))
        for _ in range(15):
            delta.requires_grad_(True)
            adv = base * (1 - masks) + delta * masks
            logits = model.patch_logits(adv)
            # untargeted on every patch: push each touched patch away from the true class
            loss = F.cross_entropy(logits.flatten(0, 1), yt[i].repeat(logits.shape[0] * logits.shape[1]))
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + 0.2 * grad.sign()).clamp(0, 1)
        adv = base * (1 - masks) + delta * masks
        robust[i] &= bool((model.predict(adv) == yt[i]).all())
    assert not (cert & ~robust).any(), "a certified image was flipped"
    assert (clean & ~robust).any(), "PGD never succeeded: the check would pass for any bound"


@pytest.mark.parametrize("depth_kernel", [1, 3])
def test_volumized_model_votes_depend_only_on_own_patch(depth_kernel) -> None:
    """The premise of the bound on the real pipeline (volumizer ranking + 3D backbone): with depth_kernel 1 a
    square changes the logits of the grid patches it overlaps and no others, whatever the re-ranking does;
    with depth_kernel 3 slices mix, the premise fails, and so the bound must not be used there."""
    from voldefense.models.defended import DefendedClassifier
    from voldefense.models.factory import build_model
    from voldefense.volumizer import Volumizer

    torch.manual_seed(0)
    size, p, s = 32, 8, 5
    backbone = build_model(
        "resnet50", dims=3, num_classes=4, width=0.125, stem="small", depth_kernel=depth_kernel
    )
    # The converter copies 2D kernels into the centre depth tap, so a fresh g mixes no slices yet; perturb
    # every 3D kernel as training would.
    with torch.no_grad():
        for module in backbone.modules():
            if isinstance(module, nn.Conv3d):
                module.weight.add_(0.05 * torch.randn_like(module.weight))
    g = DefendedClassifier(
        Volumizer(patch_size=p, metric="entropy"), backbone, aggregation="majority_vote"
    ).eval()

    def logits_by_source_patch(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = g.patch_logits(images)
            _, perm = g.volumizer.volumize(images)
        out = torch.empty_like(logits)
        out.scatter_(1, perm[..., None].expand_as(logits), logits)  # slice i came from source patch perm[i]
        return out

    x = torch.rand(6, 3, size, size)
    before = logits_by_source_patch(x)
    g_ = torch.Generator().manual_seed(1)
    leaked = False
    for _ in range(5):
        top, left = (int(v) for v in torch.randint(0, size - s + 1, (2,), generator=g_))
        m = square_mask(top, left, s, size, size)
        after = logits_by_source_patch(x * (1 - m) + torch.rand(x.shape, generator=g_) * m)
        touched = torch.zeros(size // p, size // p, dtype=torch.bool)
        touched[top // p : (top + s - 1) // p + 1, left // p : (left + s - 1) // p + 1] = True
        assert int(touched.sum()) <= max_patches_touched(s, p, size)
        untouched = ~touched.flatten()
        same = torch.isclose(before[:, untouched], after[:, untouched], rtol=1e-4, atol=1e-5).all()
        if depth_kernel == 1:
            assert same, "a patch's logits changed although the square does not overlap it"
        leaked |= not bool(same)
    assert leaked == (depth_kernel != 1)
