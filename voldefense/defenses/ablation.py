"""(De)randomized smoothing for patches (Levine & Feizi 2020) in torch, equal to ART's
`PyTorchDeRandomizedSmoothing` with ``algorithm="levine2020"``.

A base classifier sees only a band of columns (``"column"``), of rows (``"row"``) or a square block
(``"block"``) of ``ablation_size`` pixels; everything else is ablated. As in Levine & Feizi and ART, the base
model gets ``2C`` input channels, ``cat([x, 1 - x])``, and ablated pixels are 0 in both halves, so
"ablated" differs from every real colour. Bands and blocks wrap around the image edge. The smoothed classifier
evaluates every position (W columns, H rows or H·W blocks); each position votes for every class whose softmax
probability is at least ``threshold`` (0.3 in Levine & Feizi), and the prediction is the class with the most
votes, ties to the lowest class index (``argmax``, as ART).

A square patch of side m intersects at most ``Δ = m + s - 1`` band positions of size s, or ``(m + s - 1)²``
blocks, and each of those can move the vote gap between two classes by at most 2; the certificate is
`voldefense.evaluation.certify.certify_votes`.

Why not ART's own methods: ART's ``predict`` and ``eval_and_certify`` loop over positions in numpy on the CPU
and return only aggregate accuracies; its ``fit`` draws one ablation position per batch from Python's global
``random``. Here the same forward is batched on any device, gives per-image votes and certificates, and
training draws one position per image from a seeded generator. `to_art` wraps the trained base model in ART's
estimator; the tests check that ART's vote counts and certified accuracy equal ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from voldefense.defenses.base import (
    BatchTransform,
    DefendedModel,
    ModelFactory,
    Timer,
    TrainBudget,
    Trainer,
    run_training,
    straight_through,
)
from voldefense.errors import ConfigError
from voldefense.evaluation.certify import certify_votes

AblationType = Literal["column", "row", "block"]
ABLATION_TYPES: tuple[str, ...] = ("column", "row", "block")


def _band(n: int, starts: torch.Tensor, size: int) -> torch.Tensor:
    """``(len(starts), n)`` bool: position i is retained by a band of `size` starting at `starts`
    (wrapping)."""
    offsets = torch.arange(n, device=starts.device)[None, :] - starts[:, None]
    return torch.remainder(offsets, n) < size


def ablation_masks(
    ablation_type: AblationType, ablation_size: int, image_size: tuple[int, int], positions: torch.Tensor
) -> torch.Tensor:
    """Retention masks ``(P, 1, H, W)`` (float 0/1) for the given position indices.

    Positions are numbered as ART loops over them: columns 0..W-1, rows 0..H-1, blocks ``row * W + col``.
    """
    h, w = image_size
    if ablation_type == "column":
        cols = _band(w, positions, ablation_size)
        mask = cols[:, None, :].expand(-1, h, -1)
    elif ablation_type == "row":
        rows = _band(h, positions, ablation_size)
        mask = rows[:, :, None].expand(-1, -1, w)
    elif ablation_type == "block":
        rows = _band(h, torch.div(positions, w, rounding_mode="floor"), ablation_size)
        cols = _band(w, torch.remainder(positions, w), ablation_size)
        mask = rows[:, :, None] & cols[:, None, :]
    else:
        raise ConfigError(f"ablation_type must be one of {', '.join(ABLATION_TYPES)}, not {ablation_type!r}")
    return mask[:, None].float()


def num_positions(ablation_type: AblationType, image_size: tuple[int, int]) -> int:
    h, w = image_size
    return {"column": w, "row": h, "block": h * w}[ablation_type]


def ablate(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``cat([x, 1 - x]) * mask``: images ``(B, C, H, W)`` and masks ``(B, 1, H, W)`` → base inputs ``(B, 2C,
    H, W)``."""
    return torch.cat([images, 1.0 - images], dim=1) * masks


def changed_positions(
    ablation_type: AblationType, ablation_size: int, square_side: int, image_size: tuple[int, int]
) -> int:
    """Δ: how many ablation positions a square patch of `square_side` pixels can intersect (worst
    placement)."""
    h, w = image_size
    reach = square_side + ablation_size - 1
    if ablation_type == "column":
        return min(w, reach)
    if ablation_type == "row":
        return min(h, reach)
    return min(h, reach) * min(w, reach)


class AblationVoting(nn.Module):
    """The smoothed classifier: images ``(B, C, H, W)`` in [0, 1] → vote counts ``(B, K)`` used as logits.

    Forward value: the exact vote counts (as float), so ``argmax`` is the smoothed prediction and an attack
    succeeds exactly when it changes that prediction. Gradient: the hard counts are piecewise constant (zero
    gradient almost everywhere), so the module exposes the gradient of the *soft* vote count
    ``sum over positions of softmax(base(ablated))`` through a straight-through estimator (BPDA with the soft
    vote as the differentiable approximation).
    """

    def __init__(
        self,
        base: nn.Module,
        ablation_type: AblationType = "column",
        ablation_size: int = 4,
        *,
        threshold: float = 0.3,
        logits: bool = True,
        max_batch: int = 2048,
    ):
        super().__init__()
        if ablation_type not in ABLATION_TYPES:
            raise ConfigError(
                f"ablation_type must be one of {', '.join(ABLATION_TYPES)}, not {ablation_type!r}"
            )
        if not isinstance(ablation_size, int) or isinstance(ablation_size, bool) or ablation_size < 1:
            raise ConfigError(f"ablation_size must be a positive integer, not {ablation_size!r}")
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"smoothing threshold must be in (0, 1], not {threshold!r}")
        if max_batch < 1:
            raise ConfigError(f"max_batch must be positive, not {max_batch!r}")
        self.base = base
        self.ablation_type: AblationType = ablation_type
        self.ablation_size = ablation_size
        self.threshold = threshold
        self.logits = logits
        self.max_batch = max_batch

    def _check(self, images: torch.Tensor) -> tuple[int, int]:
        if images.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        limit = w if self.ablation_type == "column" else h if self.ablation_type == "row" else min(h, w)
        if self.ablation_size > limit:
            raise ConfigError(
                f"ablation_size {self.ablation_size} exceeds the image ({h}x{w}); use at most {limit}"
            )
        return h, w

    def _probs(self, base_out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(base_out, dim=1) if self.logits else base_out

    def _chunk(self, images: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard and soft vote counts of `images` summed over `positions`."""
        b = images.shape[0]
        masks = ablation_masks(self.ablation_type, self.ablation_size, images.shape[-2:], positions)
        p = masks.shape[0]
        # (P, B, ...) flattened position-major: one base call for the whole chunk.
        x = ablate(
            images.unsqueeze(0).expand(p, -1, -1, -1, -1).flatten(0, 1), masks.repeat_interleave(b, dim=0)
        )
        probs = self._probs(self.base(x)).reshape(p, b, -1)
        hard = (probs >= self.threshold).sum(0)
        return hard, probs.sum(0)

    def _position_chunks(self, images: torch.Tensor) -> list[torch.Tensor]:
        total = num_positions(self.ablation_type, images.shape[-2:])
        per_call = max(1, self.max_batch // max(images.shape[0], 1))
        return list(torch.arange(total, device=images.device).split(per_call))

    @torch.no_grad()
    def vote_counts(self, images: torch.Tensor) -> torch.Tensor:
        """Integer votes ``(B, K)`` per class over all ablation positions (ART's ``predict``)."""
        self._check(images)
        out = []
        for part in images.split(self.max_batch):
            out.append(sum(self._chunk(part, pos)[0] for pos in self._position_chunks(part)))
        return torch.cat(out)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        if not (
            torch.is_grad_enabled()
            and (images.requires_grad or any(p.requires_grad for p in self.parameters()))
        ):
            return self.vote_counts(images).float()
        out = []
        for part in images.split(self.max_batch):
            hard_total, soft_total = 0, 0
            for pos in self._position_chunks(part):
                # Recompute activations in the backward pass: H·W block positions would otherwise keep H·W
                # copies of every activation alive.
                hard, soft = checkpoint(self._chunk, part, pos, use_reentrant=False)
                hard_total = hard_total + hard
                soft_total = soft_total + soft
            out.append(straight_through(hard_total.float(), soft_total))
        return torch.cat(out)

    def extra_repr(self) -> str:
        return f"{self.ablation_type}, ablation_size={self.ablation_size}, threshold={self.threshold}"


def random_ablation(ablation_type: AblationType, ablation_size: int) -> BatchTransform:
    """A training batch transform: each image ablated at its own uniformly drawn position."""

    def transform(
        model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        total = num_positions(ablation_type, images.shape[-2:])
        positions = torch.randint(0, total, (images.shape[0],), generator=generator).to(images.device)
        return ablate(images, ablation_masks(ablation_type, ablation_size, images.shape[-2:], positions))

    return transform


def to_art(
    voting: AblationVoting, image_shape: tuple[int, int, int], num_classes: int, *, device_type: str = "cpu"
):  # noqa: ANN201
    """ART's ``PyTorchDeRandomizedSmoothing(algorithm="levine2020")`` around the trained base model of
    `voting`.

    For interoperability and as the reference implementation in the tests. Imports ART lazily.
    """
    from art.estimators.certification.derandomized_smoothing import PyTorchDeRandomizedSmoothing

    return PyTorchDeRandomizedSmoothing(
        model=voting.base,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(image_shape),
        nb_classes=num_classes,
        ablation_size=voting.ablation_size,
        algorithm="levine2020",
        ablation_type=voting.ablation_type,
        threshold=voting.threshold,
        logits=voting.logits,
        clip_values=(0.0, 1.0),
        device_type=device_type,
        verbose=False,
    )


class DerandomizedSmoothingDefense:
    """(De)randomized smoothing (Levine & Feizi 2020; ART ``algorithm="levine2020"``) with f's architecture as
    the base classifier (built with ``2C`` input channels) trained on randomly ablated images with f's budget.

    Attack view ``"soft_votes"``: forward = exact vote counts, gradient = that of the soft vote count (see
    `AblationVoting`). Certificate: per square side m, correct and ``votes[y] - votes[c] > 2Δ`` for every
    other c (``= 2Δ`` and ``y < c`` also certifies: argmax breaks ties to the lowest index), Δ from
    `changed_positions`.

    Options: ``ablation_type`` / ``ablation_size``: the retained band or block; ``threshold``: softmax
    probability a position needs to vote for a class; ``max_batch``: ablated images per base-model call (a
    memory knob).
    """

    name = "derandomized_smoothing"

    def __init__(
        self,
        ablation_type: AblationType = "column",
        ablation_size: int = 4,
        threshold: float = 0.3,
        max_batch: int = 2048,
    ):
        # Build once on a placeholder to validate every option where the config is loaded.
        AblationVoting(nn.Identity(), ablation_type, ablation_size, threshold=threshold, max_batch=max_batch)
        self.ablation_type: AblationType = ablation_type
        self.ablation_size = ablation_size
        self.threshold = threshold
        self.max_batch = max_batch

    def fit(
        self,
        make_model: ModelFactory,
        images: torch.Tensor,
        labels: torch.Tensor,
        budget: TrainBudget,
        *,
        base_model: nn.Module | None = None,  # noqa: ARG002 - the base needs 2C channels, f cannot be reused
        trainer: Trainer | None = None,
    ) -> DefendedModel:
        c, h, w = images.shape[1:]
        voting = AblationVoting(
            make_model(2 * c),
            self.ablation_type,
            self.ablation_size,
            threshold=self.threshold,
            max_batch=self.max_batch,
        )
        voting._check(images[:1])
        with Timer() as timer:
            transform = random_ablation(self.ablation_type, self.ablation_size)
            run_training(voting.base, images, labels, budget, transform=transform, trainer=trainer)
        voting.to(budget.device).eval()
        ablation_type, ablation_size = self.ablation_type, self.ablation_size

        def certifier(x: torch.Tensor, y: torch.Tensor, sides: Sequence[int]) -> dict[int, torch.Tensor]:
            counts = voting.vote_counts(x.to(next(voting.parameters()).device)).cpu()
            return {
                side: certify_votes(
                    counts,
                    y.cpu(),
                    changed_positions(ablation_type, ablation_size, side, (h, w)),
                    tie_rule="lowest_index",
                )
                for side in sides
            }

        return DefendedModel(
            name=f"derandomized_smoothing({self.ablation_type}, size {self.ablation_size})",
            model=voting,
            views={"soft_votes": voting},
            train_seconds=timer.seconds,
            certifier=certifier,
            info={
                "ablation_type": self.ablation_type,
                "ablation_size": self.ablation_size,
                "threshold": self.threshold,
                "positions": num_positions(self.ablation_type, (h, w)),
                "gradients": {
                    "soft_votes": "straight-through: gradient of the summed softmax over positions"
                },
            },
        )
