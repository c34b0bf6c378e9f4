"""A torch median filter equal to ART's `SpatialSmoothing` (scipy ``median_filter``), and models behind it.

ART's `SpatialSmoothing` runs scipy on numpy arrays (CPU only, one round trip per call); this module computes
the same values in torch, batched and on any device, so attacks can run on a GPU. Equality with ART is a test.

scipy's semantics, reproduced exactly:

- the window is ``window × window`` over H and W only (never across channels or images);
- borders use scipy's ``mode="reflect"`` (half-sample symmetric: ``d c b a | a b c d | d c b a``);
- for an even window the window spans offsets ``-(w//2) .. w - 1 - w//2`` and the median is the upper of
  the two middle values (scipy picks rank ``n // 2`` of the ``n = w²`` sorted values).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from voldefense.defenses.base import (
    DefendedModel,
    ModelFactory,
    Timer,
    TrainBudget,
    Trainer,
    run_training,
    straight_through,
)
from voldefense.errors import ConfigError

GradientMode = Literal["naive", "bpda"]


def _symmetric_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices into a length-`n` axis padded by `before`/`after` with scipy's "reflect" (edge repeated)."""
    idx = torch.arange(-before, n + after, device=device)
    idx = torch.where(idx < 0, -idx - 1, idx)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def median_filter(images: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Median over each ``window × window`` neighbourhood of each channel; images ``(B, C, H, W)``.

    The gradient (autograd through ``kthvalue``) reaches only the pixel that is each window's median — the
    "naive" gradient an attacker gets without BPDA.
    """
    if images.dim() != 4:
        raise ValueError(f"median_filter expects images (B, C, H, W), got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    before, after = window // 2, window - 1 - window // 2
    if window > min(h, w):
        raise ConfigError(
            f"median filter window {window} is larger than the images ({h}x{w}); use a smaller window"
        )
    if window == 1:
        return images.clone()
    rows = _symmetric_index(h, before, after, images.device)
    cols = _symmetric_index(w, before, after, images.device)
    padded = images[:, :, rows][:, :, :, cols]
    # (B*C, window², H*W): each column is one window; scipy's median is rank n // 2 (0-based) of n sorted
    # values.
    patches = F.unfold(padded.reshape(b * c, 1, h + window - 1, w + window - 1), kernel_size=window)
    rank = window * window // 2 + 1  # kthvalue is 1-based
    med = patches.kthvalue(rank, dim=1).values
    return med.reshape(b, c, h, w)


class MedianFilter(nn.Module):
    """Median filter as a layer. ``gradient="naive"``: autograd through the filter; ``"bpda"``: the backward
    pass is the identity (Athalye et al. 2018). The forward values are bit-identical in both modes."""

    def __init__(self, window: int = 3, gradient: GradientMode = "naive"):
        super().__init__()
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ConfigError(f"median filter window must be a positive integer, not {window!r}")
        if gradient not in ("naive", "bpda"):
            raise ConfigError(f"median filter gradient must be 'naive' or 'bpda', not {gradient!r}")
        self.window = window
        self.gradient = gradient

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.gradient == "naive":
            return median_filter(images, self.window)
        with torch.no_grad():
            filtered = median_filter(images, self.window)
        return straight_through(filtered, images)

    def extra_repr(self) -> str:
        return f"window={self.window}, gradient={self.gradient}"


class FilteredClassifier(nn.Module):
    """``classifier(filter(images))``: images in [0, 1] → image logits. The classifier is shared, not
    copied."""

    def __init__(self, classifier: nn.Module, window: int = 3, gradient: GradientMode = "naive"):
        super().__init__()
        self.filter = MedianFilter(window, gradient)
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.filter(images))


class MedianFilterDefense:
    """Median filtering in front of f (ART's `SpatialSmoothing`), the classic answer to few-pixel attacks.

    ``window``: side of the median window (ART's ``window_size``).

    ``train_on_filtered=False`` (default): the filter is put in front of the run's trained f as is (ART's
    default, ``apply_fit=False``), so no extra training; without the run's f, a fresh f is trained on clean
    images.
    ``train_on_filtered=True``: a fresh f is trained on filtered images (usually better clean accuracy).
    Attack views: ``"naive"`` (autograd through the median) and ``"bpda"`` (identity backward through the
    filter).
    """

    name = "median_filter"

    def __init__(self, window: int = 3, train_on_filtered: bool = False):
        MedianFilter(window)  # validates the window
        if not isinstance(train_on_filtered, bool):
            raise ConfigError(
                f"median_filter train_on_filtered must be true or false, not {train_on_filtered!r}"
            )
        self.window = window
        self.train_on_filtered = train_on_filtered

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
        reused = base_model is not None and not self.train_on_filtered
        with Timer() as timer:
            if reused:
                classifier = base_model
            else:
                classifier = make_model(images.shape[1])
                window = self.window
                transform = (lambda m, x, y, g: median_filter(x, window)) if self.train_on_filtered else None
                run_training(classifier, images, labels, budget, transform=transform, trainer=trainer)
        classifier.to(budget.device).eval()
        views = {mode: FilteredClassifier(classifier, self.window, mode).eval() for mode in ("naive", "bpda")}
        return DefendedModel(
            name=f"median_filter(window {self.window})",
            model=views["naive"],
            views=views,
            train_seconds=timer.seconds,
            info={
                "window": self.window,
                "train_on_filtered": self.train_on_filtered,
                "reuses_undefended_model": reused,
                "gradients": {"naive": "autograd through the median", "bpda": "identity through the filter"},
            },
        )
