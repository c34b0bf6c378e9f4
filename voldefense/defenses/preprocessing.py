"""Shared pieces of the input-transformation defenses (a transform in front of f): the classifier behind the
transform, attacked through the transform ("naive") or around it ("bpda"), and how that classifier is obtained.

Local gradient smoothing and digital watermarking both put a non-learned image transform ``t`` in front of the
run's f, as the median filter does. Their attack views follow Athalye et al. (2018): ``naive`` differentiates
``f(t(x))`` with autograd (whatever gradient ``t`` happens to have), ``bpda`` replaces ``t``'s backward pass by
the identity (the attacker gets f's gradient at ``t(x)``). Both views compute exactly the same forward values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from voldefense.defenses.base import (
    BatchTransform,
    ModelFactory,
    Timer,
    TrainBudget,
    Trainer,
    run_training,
    straight_through,
)
from voldefense.errors import ConfigError

GradientMode = Literal["naive", "bpda"]
ImageTransform = Callable[[torch.Tensor], torch.Tensor]
GRADIENT_MODES: tuple[str, ...] = ("naive", "bpda")


class TransformedClassifier(nn.Module):
    """``classifier(transform(images))``. ``gradient="naive"``: autograd through the transform; ``"bpda"``:
    the transform's backward pass is the identity. The classifier is shared, not copied."""

    def __init__(self, classifier: nn.Module, transform: ImageTransform, gradient: GradientMode = "naive"):
        super().__init__()
        if gradient not in GRADIENT_MODES:
            raise ConfigError(f"gradient must be 'naive' or 'bpda', not {gradient!r}")
        self.classifier = classifier
        self.transform = transform
        self.gradient = gradient

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
        if self.gradient == "naive":
            return self.classifier(self.transform(images))
        with torch.no_grad():
            cleaned = self.transform(images)
        return self.classifier(straight_through(cleaned, images))

    def extra_repr(self) -> str:
        return f"gradient={self.gradient}"


def transform_views(classifier: nn.Module, transform: ImageTransform) -> dict[str, nn.Module]:
    """The two attack views, ``naive`` and ``bpda``, of ``classifier(transform(x))`` (eval mode)."""
    return {mode: TransformedClassifier(classifier, transform, mode).eval() for mode in GRADIENT_MODES}


def classifier_behind(
    make_model: ModelFactory,
    images: torch.Tensor,
    labels: torch.Tensor,
    budget: TrainBudget,
    *,
    base_model: nn.Module | None,
    trainer: Trainer | None,
    transform: BatchTransform | None = None,
) -> tuple[nn.Module, float, bool]:
    """The classifier a transform defense puts its transform in front of: the run's trained f when given and no
    training transform is asked for (nothing trained), else a fresh f trained with the run's budget (on
    ``transform``-ed batches when given). Returns (classifier in eval mode on ``budget.device``, training
    seconds, whether f was reused)."""
    reused = base_model is not None and transform is None
    with Timer() as timer:
        if reused:
            classifier = base_model
        else:
            classifier = make_model(images.shape[1])
            run_training(classifier, images, labels, budget, transform=transform, trainer=trainer)
    classifier.to(budget.device).eval()
    return classifier, timer.seconds, reused


def check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, not {value!r}")
    return value


def check_positive_int(value: object, what: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, not {value!r}")
    return value


def check_fraction(value: object, what: str, *, low_open: bool = True) -> float:
    """A number in (0, 1] (``low_open``) or [0, 1]."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value <= 1.0
    ok = ok and (value > 0.0 if low_open else value >= 0.0)  # type: ignore[operator]
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ConfigError(f"{what} must be a number in {interval}, not {value!r}")
    return float(value)  # type: ignore[arg-type]
