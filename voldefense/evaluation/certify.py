"""Certified robustness from vote counts: per-patch majority voting (g) and ablation voting (smoothing).

A classifier that predicts by counting votes, where an adversarial square of side s can change at most T of
the votes, is certifiably robust on an image when its vote margin survives T changed votes. A changed vote can
take one vote from the true class and give one to a competitor, so it moves their gap by at most 2: the image
is certified when ``votes[y] - votes[c] > 2T`` for every other class c (ties: see `certify_votes`).

For volumized models (docs/certification.md has the full argument): when g runs f on each patch alone
(``depth_kernel: 1``, no pooling over depth; g declares it as ``patches_independent``), each depth slice's
logits depend only on that slice's pixels; the ranking only permutes slices and a majority vote is
permutation-invariant, so a square can change at most the votes of the grid patches it overlaps —
`max_patches_touched`. `certify_defended` certifies such a g and refuses any other (`majority_vote_refusal`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from voldefense.errors import ConfigError, UsageError

TieRule = Literal["conservative", "lowest_index"]


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    else:
        pair = tuple(int(v) for v in value)  # type: ignore[union-attr]
        if len(pair) != 2:
            raise ConfigError(f"{what} must be an integer or a pair (height, width), not {value!r}")
    if min(pair) < 1:
        raise ConfigError(f"{what} must be positive, not {value!r}")
    return pair  # type: ignore[return-value]


def _max_cells_touched_1d(side: int, cell: int, length: int, cells: int) -> int:
    """Most grid cells ``[k·cell, (k+1)·cell)``, k < cells, that an interval of `side` inside ``[0, length)``
    overlaps, maximised over every placement (exact, by enumeration)."""
    best = 0
    for start in range(length - side + 1):
        first = start // cell
        last = min((start + side - 1) // cell, cells - 1)
        best = max(best, max(0, last - first + 1) if first < cells else 0)
    return best


def max_patches_touched(
    square_side: int, patch_size: int | Sequence[int], image_size: int | Sequence[int], *, pad: bool = False
) -> int:
    """The most patches of the grid that an adversarial ``square_side × square_side`` square placed anywhere
    inside the image overlaps.

    The grid is the volumizer's: with ``pad=False`` patches of ``patch_size`` tile the image from its top-left
    corner and a remainder strip at the bottom/right belongs to no patch (it is cropped, so it votes nowhere);
    the count is then exact per axis (enumerating placements), and the axes are independent, so the product is
    the exact worst case. With ``pad=True`` (image padded to whole patches) the count is
    ``min(grid, ceil((s - 1) / p) + 1)`` per axis, an upper bound whatever side the padding is added on.
    """
    ph, pw = _pair(patch_size, "patch_size")
    h, w = _pair(image_size, "image_size")
    if isinstance(square_side, bool) or not isinstance(square_side, int) or square_side < 1:
        raise ConfigError(f"square side must be a positive integer number of pixels, not {square_side!r}")
    if square_side > min(h, w):
        raise ConfigError(
            f"square side {square_side} does not fit in a {h}x{w} image; use at most {min(h, w)}"
        )
    rows = math.ceil(h / ph) if pad else h // ph
    cols = math.ceil(w / pw) if pad else w // pw
    if rows == 0 or cols == 0:
        raise ConfigError(
            f"patch_size {(ph, pw)} is larger than the image {(h, w)}; use a smaller patch size"
        )
    if pad:
        # Where the padding goes (end or both sides) shifts the grid; this bound holds for every offset.
        return min(rows, -(-(square_side - 1) // ph) + 1) * min(cols, -(-(square_side - 1) // pw) + 1)
    return _max_cells_touched_1d(square_side, ph, h, rows) * _max_cells_touched_1d(square_side, pw, w, cols)


def square_side_for_area(area_fraction: float, height: int, width: int | None = None) -> int:
    """Side in pixels of the square patch covering `area_fraction` of an ``height × width`` image, rounded
    *up*:
    a certificate for a square covers every smaller one, so rounding up keeps it valid for the attack's
    patch."""
    width = height if width is None else width
    if not 0.0 < area_fraction <= 1.0:
        raise ConfigError(f"patch area fraction must be in (0, 1], not {area_fraction!r}")
    side = math.ceil(math.sqrt(area_fraction * height * width) - 1e-9)
    return max(1, min(side, height, width))


def certify_votes(
    counts: torch.Tensor, labels: torch.Tensor, max_changed: int, *, tie_rule: TieRule = "conservative"
) -> torch.Tensor:
    """``(B,)`` bool: the winner is the true label and stays so when any `max_changed` voters change votes.

    `counts` ``(B, K)``: votes per class (each voter gives each class at most one vote; a voter may vote for
    several classes, as in Levine & Feizi's thresholded votes). A changed voter can take one vote from the
    true class y and add one to a class c, so y is certified against c when
    ``counts[y] - counts[c] > 2 · max_changed``. When the gap is exactly ``2 · max_changed``, the attacked
    image can end in a tie between y and c:

    - ``"conservative"`` counts that as not certified, valid for any tie-breaking the classifier uses (the
      rule for g's majority vote, whose aggregation may break ties by other scores);
    - ``"lowest_index"`` certifies it when ``y < c``, valid exactly for classifiers predicting ``argmax`` of
      the counts with ties to the lowest class index (ART's Levine & Feizi rule, applied here against *every*
      runner-up rather than only the one ``kthvalue`` picks).
    """
    if counts.dim() != 2:
        raise ValueError(f"counts must be (B, K), got shape {tuple(counts.shape)}")
    if tie_rule not in ("conservative", "lowest_index"):
        raise ConfigError(f"tie_rule must be 'conservative' or 'lowest_index', not {tie_rule!r}")
    if max_changed < 0:
        raise ValueError(f"max_changed must be >= 0, got {max_changed}")
    counts = counts.long()
    labels = labels.to(counts.device).long()
    k = counts.shape[1]
    true_votes = counts.gather(1, labels[:, None])
    gap = true_votes - counts  # (B, K), gap[b, y] = 0
    classes = torch.arange(k, device=counts.device)[None, :]
    safe = gap > 2 * max_changed
    if tie_rule == "lowest_index":
        safe |= (gap == 2 * max_changed) & (labels[:, None] < classes)
    others = classes != labels[:, None]
    return (safe | ~others).all(dim=1)


def vote_counts(patch_logits: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` long: how many patches vote for each class (each patch votes for its argmax)."""
    if patch_logits.dim() != 3:
        raise ValueError(f"patch logits must be (B, N, K), got shape {tuple(patch_logits.shape)}")
    votes = patch_logits.argmax(dim=2)
    return torch.nn.functional.one_hot(votes, patch_logits.shape[2]).sum(dim=1)


def certify_majority_vote(
    patch_logits: torch.Tensor,
    labels: torch.Tensor,
    square_side: int,
    patch_size: int | Sequence[int],
    image_size: int | Sequence[int],
    *,
    pad: bool = False,
) -> torch.Tensor:
    """``(B,)`` bool: correct and certified against every adversarial square of `square_side` pixels.

    `patch_logits` ``(B, N, K)`` are the per-patch logits of a model whose patch votes are independent (g with
    ``depth_kernel: 1``, no depth pooling, majority-vote aggregation); N must be the number of grid patches.
    Ties are conservative (see `certify_votes`): certified only if the true class keeps *strictly* more votes
    than every other class after the worst case, whatever the aggregation does with ties.
    """
    ph, pw = _pair(patch_size, "patch_size")
    h, w = _pair(image_size, "image_size")
    grid = (math.ceil(h / ph) * math.ceil(w / pw)) if pad else (h // ph) * (w // pw)
    if patch_logits.dim() != 3 or patch_logits.shape[1] != grid:
        raise ConfigError(
            f"certification needs one vote per grid patch: got patch logits {tuple(patch_logits.shape)}, "
            f"expected (B, {grid}, K) for {h}x{w} images and {ph}x{pw} patches; turn off depth pooling and "
            "use depth_kernel 1"
        )
    touched = max_patches_touched(square_side, (ph, pw), (h, w), pad=pad)
    return certify_votes(vote_counts(patch_logits), labels, touched, tie_rule="conservative")


def majority_vote_refusal(model: Any) -> str:
    """Empty when the majority-vote certificate holds for the defended classifier `model`; otherwise why not,
    in one line.

    It holds when g's per-patch logits provably depend on their own patch only — a property the built model
    declares (``patches_independent``: g built with ``depth_kernel`` 1, no depth pooling and ``fold`` not
    false runs f on each patch alone), never inferred from configuration names — and g aggregates by majority
    vote.
    """
    if not all(hasattr(model, name) for name in ("volumizer", "patch_logits", "aggregation")):
        return f"{type(model).__name__} is not a volumized classifier (volumizer, per-patch logits, aggregation)"
    reasons = []
    if getattr(model, "patches_independent", False) is not True:
        reasons.append(
            "its per-patch logits are not provably independent of other patches (only g that runs f on each "
            "patch alone is: depth_kernel 1, pool_depth false, fold not false)"
        )
    if model.aggregation != "majority_vote":
        reasons.append(f"its aggregation is {model.aggregation}, not majority_vote")
    return "; ".join(reasons)


@torch.no_grad()
def certify_defended(
    model: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    square_sides: Sequence[int],
    *,
    batch_size: int = 256,
) -> dict[int, torch.Tensor]:
    """Per square side in pixels, ``(B,)`` bool: g is correct on the image and certified against every
    adversarial square of that side (`certify_majority_vote` on g's per-patch logits, in eval mode).

    `model` is a `DefendedClassifier`; one that the certificate does not cover is a `UsageError` saying why
    (`majority_vote_refusal`). Its train/eval mode is restored afterwards.
    """
    reason = majority_vote_refusal(model)
    if reason:
        raise UsageError(f"majority-vote certification is not defined for this model: {reason}")
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        logits = torch.cat(
            [
                model.patch_logits(images[i : i + batch_size].to(device)).float().cpu()
                for i in range(0, len(images), batch_size)
            ]
        )
    finally:
        model.train(training)
    volumizer = model.volumizer
    image_size = tuple(images.shape[2:])
    return {
        side: certify_majority_vote(
            logits, labels.cpu(), side, volumizer.patch_size, image_size, pad=volumizer.pad
        )
        for side in square_sides
    }


def certified_accuracy(certified: torch.Tensor) -> float:
    """Fraction of images certified (and correct)."""
    return float(certified.float().mean()) if certified.numel() else float("nan")
