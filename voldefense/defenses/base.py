"""The interface every baseline defense implements, and the training loop they share.

A defense plugin's spec (`voldefense.specs.DefenseSpec`) has a factory ``factory(**options) -> Defense``.
The runner then calls, once per run::

    defended = defense.fit(make_model, train_images, train_labels, budget, base_model=f)

and gets a `DefendedModel`:

- ``defended.model``: the defended classifier, an ``nn.Module`` from images ``(B, C, H, W)`` in [0, 1] to
  image logits ``(B, K)``; its ``argmax`` is the defense's prediction. Every attack plugin can target it.
- ``defended.views``: named image→logits modules to attack (``defended.model_for_attack(view)``). All views
  compute the same forward values as ``model``; only their gradients differ (e.g. the median filter's
  "naive" gradient through the filter and its "bpda" straight-through gradient). A defense's robust accuracy
  is the worst case over its views.
- ``defended.certify(images, labels, square_sides)``: where the defense gives a certificate, a dict from each
  square patch side (pixels) to a per-image bool tensor "correct and certified against every square patch of
  that side"; ``None`` for defenses without one (``defended.certifiable`` says which). Sides the defense cannot
  certify at all (beyond PatchCleanser's mask set) are left out of the dict.
- ``defended.train_seconds`` and ``defended.info`` (JSON-serialisable facts for the report).

``make_model(in_channels)`` builds a fresh, untrained copy of the run's undefended architecture f taking that
many input channels, so a baseline gets f's architecture and f's training budget (`TrainBudget`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)

ModelFactory = Callable[[int], nn.Module]
"""``make_model(in_channels) -> nn.Module``: a fresh, untrained f (images → logits) for that many input
channels."""

BatchTransform = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
"""``transform(model, images, labels, generator) -> inputs``: what the model is trained on for one batch."""

Trainer = Callable[[nn.Module, torch.Tensor, torch.Tensor, BatchTransform | None], object]
"""``trainer(model, images, labels, transform)``: trains `model` in place on the training set, feeding each
batch through ``transform(model, x, y, generator)`` when one is given. The default is `train_classifier` with
the `TrainBudget`; a runner with its own training loop (optimizer, schedule, checkpoints) passes one, so the
baselines train exactly like f. When a trainer is passed, the ``images``/``labels`` given to ``Defense.fit`` are
only a probe batch (shapes, dtypes): train through `run_training(..., trainer=trainer)`, never on them alone."""

Certifier = Callable[[torch.Tensor, torch.Tensor, Sequence[int]], dict[int, torch.Tensor]]


@dataclass(frozen=True)
class TrainBudget:
    """How a baseline is trained: the same settings as the undefended model f of the run.

    Training uses Adam with this learning rate and weight decay, shuffling with a generator seeded by
    ``seed``; ``device`` is where the model is trained and left.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str | torch.device = "cpu"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError(f"training epochs must be a non-negative integer, not {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"training batch_size must be a positive integer, not {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"training lr must be positive, not {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"training weight_decay must be >= 0, not {self.weight_decay!r}")


@dataclass
class DefendedModel:
    """A trained baseline: the classifier to evaluate, its attack views and (optionally) its certifier."""

    name: str
    model: nn.Module
    views: Mapping[str, nn.Module]
    train_seconds: float = 0.0
    certifier: Certifier | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError(f"defense {self.name!r} must expose at least one attack view")

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(self.views)

    def model_for_attack(self, view: str) -> nn.Module:
        """The image→logits module an attack should target for `view` (same forward as `model`)."""
        try:
            return self.views[view]
        except KeyError:
            raise ConfigError(
                f"defense {self.name!r} has no attack view {view!r} (available: {', '.join(self.views)})"
            ) from None

    @property
    def certifiable(self) -> bool:
        return self.certifier is not None

    def certify(
        self, images: torch.Tensor, labels: torch.Tensor, square_sides: Sequence[int]
    ) -> dict[int, torch.Tensor] | None:
        """Per square side (pixels), a ``(B,)`` bool tensor: prediction correct *and* certified (sides it cannot
        certify are left out); None if the defense has no certificate. Convert area fractions with
        `voldefense.evaluation.certify.square_side_for_area`.
        """
        if self.certifier is None:
            return None
        return self.certifier(images, labels, [int(s) for s in square_sides])

    def to(self, device: str | torch.device) -> DefendedModel:
        """Move the model and every view to `device` (views share the model's parameters)."""
        self.model.to(device)
        for view in self.views.values():
            view.to(device)
        return self


@runtime_checkable
class Defense(Protocol):
    """What a `DefenseSpec` factory returns."""

    name: str

    def fit(
        self,
        make_model: ModelFactory,
        images: torch.Tensor,
        labels: torch.Tensor,
        budget: TrainBudget,
        *,
        base_model: nn.Module | None = None,
        trainer: Trainer | None = None,
    ) -> DefendedModel:
        """Train (or wrap) the defended classifier on the training set.

        ``base_model`` is the run's trained undefended f; a defense that only adds preprocessing in front of f
        may reuse it instead of training a copy, every other defense ignores it. ``trainer`` replaces the
        default training loop (see `Trainer`); ``budget.device`` is where the result is left either way.
        """
        ...


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return value.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:  # noqa: ARG004
        return None, grad


def straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Return `value` exactly, with the gradient of `surrogate` (same shape): the BPDA construction.

    Unlike ``surrogate + (value - surrogate).detach()``, the forward result is bit-identical to `value`, so
    argmax ties (e.g. in integer vote counts) are never broken differently by rounding.
    """
    if value.shape != surrogate.shape:
        raise ValueError(
            f"straight_through needs equal shapes, got {tuple(value.shape)} and {tuple(surrogate.shape)}"
        )
    return _StraightThrough.apply(value, surrogate)


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    budget: TrainBudget,
    *,
    transform: BatchTransform | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[float]:
    """Train `model` with Adam under `budget`; returns each epoch's mean loss and leaves the model in eval
    mode.

    `images` may live on the CPU; each batch is moved to ``budget.device``. `transform` (if given) maps each
    batch to what the model is trained on (ablated images for smoothing, attacked images for adversarial
    training) and draws its randomness from the generator it is given, so training is deterministic given
    ``budget.seed``.
    """
    device = torch.device(budget.device)
    model.to(device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    generator = torch.Generator().manual_seed(budget.seed)
    torch.manual_seed(budget.seed)  # dropout and other in-model randomness
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    history: list[float] = []
    n = images.shape[0]
    for epoch in range(budget.epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        total, count = 0.0, 0
        for start in range(0, n, budget.batch_size):
            idx = order[start : start + budget.batch_size]
            x = images[idx].to(device)
            y = labels[idx].to(device)
            if transform is not None:
                x = transform(model, x, y, generator)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / max(count, 1))
        logger.debug("epoch %d/%d: loss %.4f", epoch + 1, budget.epochs, history[-1])
    model.eval()
    return history


def run_training(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    budget: TrainBudget,
    *,
    transform: BatchTransform | None = None,
    trainer: Trainer | None = None,
) -> None:
    """Train `model` with `trainer` if given, else `train_classifier`; leave it on ``budget.device`` in eval
    mode."""
    if trainer is None:
        train_classifier(model, images, labels, budget, transform=transform)
    else:
        trainer(model, images, labels, transform)
    model.to(torch.device(budget.device)).eval()


class Timer:
    """Wall-clock seconds of a block: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
