"""Local gradient smoothing (LGS; Naseer, Khan & Porikli, WACV 2019) in torch, in front of the run's f.

An adversarial patch is a small region of unusually dense high-frequency content. LGS:

1. computes the first-order gradient magnitude of the grey image (forward differences, 0 past the last
   row/column) and min-max normalises it to [0, 1] per image: ``g``;
2. slides ``window × window`` windows with ``window - overlap`` stride (plus one flush with the bottom/right
   edge, so every pixel is in a window) and keeps ``g`` only inside windows whose mean exceeds ``threshold``:
   ``ĝ = g · 1[pixel in a kept window]``;
3. scales the image down where ``ĝ`` is high: ``t(x) = x ⊙ (1 − clip(λ·ĝ, 0, 1))``, λ = ``smoothing_factor``.

The paper's setting is ImageNet at 299×299 (Inception v3) with window 15, overlap 5, threshold 0.1 and λ 2.3;
the defaults here keep threshold and λ and scale the window to 32×32 CIFAR images (window 5, overlap 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from voldefense.defenses.base import DefendedModel, ModelFactory, TrainBudget, Trainer
from voldefense.defenses.preprocessing import (
    check_bool,
    check_fraction,
    check_positive_int,
    classifier_behind,
    transform_views,
)
from voldefense.errors import ConfigError


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)``: ``sqrt(dx² + dy²)`` of the channel-mean image, forward differences (0 at the far
    edge)."""
    grey = images.mean(dim=1, keepdim=True)
    dx = F.pad(grey[..., :, 1:] - grey[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(grey[..., 1:, :] - grey[..., :-1, :], (0, 0, 0, 1))
    # The clamp keeps sqrt's gradient finite where the image is flat (the naive view differentiates this).
    return (dx.square() + dy.square()).clamp_min(1e-12).sqrt()


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation of each ``(1, H, W)`` map to [0, 1]; a constant map becomes 0."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    span = high - low
    return torch.where(span > 1e-6, (maps - low) / span.clamp_min(1e-6), torch.zeros_like(maps))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis: 0, stride, 2·stride, … and one flush with the far edge."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def _membership(length: int, window: int, starts: list[int], device: torch.device) -> torch.Tensor:
    """``(len(starts), length)`` float: pixel i lies in the window starting at ``starts[r]``."""
    idx = torch.arange(length, device=device)[None, :]
    first = torch.tensor(starts, device=device)[:, None]
    return ((idx >= first) & (idx < first + window)).float()


def local_gradient_smoothing(
    images: torch.Tensor,
    *,
    window: int = 5,
    overlap: int = 2,
    threshold: float = 0.1,
    smoothing_factor: float = 2.3,
) -> torch.Tensor:
    """LGS of images ``(B, C, H, W)`` in [0, 1] (see the module docstring); same shape."""
    if images.dim() != 4:
        raise ValueError(f"local_gradient_smoothing expects images (B, C, H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if window > min(h, w):
        raise ConfigError(f"LGS window {window} is larger than the images ({h}x{w}); use a smaller window")
    g = normalise(gradient_magnitude(images))
    stride = window - overlap
    rows = _membership(h, window, window_starts(h, window, stride), images.device)
    cols = _membership(w, window, window_starts(w, window, stride), images.device)
    # Mean of g in every window position (stride 1), then the positions of our grid.
    means = F.avg_pool2d(g, window, stride=1)[:, 0]  # (B, H - window + 1, W - window + 1)
    grid = means[:, window_starts(h, window, stride)][:, :, window_starts(w, window, stride)]
    kept = (grid > threshold).float()  # (B, R, C)
    in_kept = torch.einsum("rh,brc,cw->bhw", rows, kept, cols) > 0
    g_hat = g * in_kept[:, None].to(g.dtype)
    return images * (1.0 - (smoothing_factor * g_hat).clamp(0.0, 1.0))


class LocalGradientSmoothing(nn.Module):
    """LGS as a stateless layer (options validated here)."""

    def __init__(self, window: int = 5, overlap: int = 2, threshold: float = 0.1, smoothing_factor: float = 2.3):
        super().__init__()
        self.window = check_positive_int(window, "local_gradient_smoothing window", minimum=2)
        self.overlap = check_positive_int(overlap, "local_gradient_smoothing overlap", minimum=0)
        if overlap >= window:
            raise ConfigError(
                f"local_gradient_smoothing overlap ({overlap}) must be smaller than the window ({window})"
            )
        self.threshold = check_fraction(threshold, "local_gradient_smoothing threshold", low_open=False)
        if isinstance(smoothing_factor, bool) or not isinstance(smoothing_factor, int | float) or smoothing_factor <= 0:
            raise ConfigError(
                f"local_gradient_smoothing smoothing_factor must be a positive number, not {smoothing_factor!r}"
            )
        self.smoothing_factor = float(smoothing_factor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return local_gradient_smoothing(
            images,
            window=self.window,
            overlap=self.overlap,
            threshold=self.threshold,
            smoothing_factor=self.smoothing_factor,
        )

    def extra_repr(self) -> str:
        return (
            f"window={self.window}, overlap={self.overlap}, threshold={self.threshold}, "
            f"smoothing_factor={self.smoothing_factor}"
        )


class LocalGradientSmoothingDefense:
    """LGS in front of the run's trained f (no training; without f, a fresh f is trained on clean images), or,
    with ``train_on_smoothed``, in front of a fresh f trained on LGS-processed images with f's budget.

    Attack views: ``naive`` (autograd through LGS: through the scaling by ``ĝ``; the window selection is a step
    function) and ``bpda`` (identity backward through LGS), as for the median filter.
    """

    name = "local_gradient_smoothing"

    def __init__(
        self,
        window: int = 5,
        overlap: int = 2,
        threshold: float = 0.1,
        smoothing_factor: float = 2.3,
        train_on_smoothed: bool = False,
    ):
        self.lgs = LocalGradientSmoothing(window, overlap, threshold, smoothing_factor)
        self.train_on_smoothed = check_bool(train_on_smoothed, "local_gradient_smoothing train_on_smoothed")

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
        lgs = self.lgs
        self.check_image_shape(images.shape)
        transform = (lambda m, x, y, g: lgs(x)) if self.train_on_smoothed else None
        classifier, seconds, reused = classifier_behind(
            make_model, images, labels, budget, base_model=base_model, trainer=trainer, transform=transform
        )
        views = transform_views(classifier, lgs)
        return DefendedModel(
            name=f"local_gradient_smoothing(window {lgs.window}, overlap {lgs.overlap})",
            model=views["naive"],
            views=views,
            train_seconds=seconds,
            info={
                "window": lgs.window,
                "overlap": lgs.overlap,
                "threshold": lgs.threshold,
                "smoothing_factor": lgs.smoothing_factor,
                "train_on_smoothed": self.train_on_smoothed,
                "reuses_undefended_model": reused,
                "gradients": {"naive": "autograd through LGS", "bpda": "identity through LGS"},
            },
        )

    def check_image_shape(self, image_shape: Sequence[int]) -> None:
        """Refuses (ConfigError, one line) a window larger than the images, before anything is trained."""
        h, w = int(image_shape[-2]), int(image_shape[-1])
        if self.lgs.window > min(h, w):
            raise ConfigError(
                f"local_gradient_smoothing window {self.lgs.window} is larger than the {h}x{w} images; use a "
                "smaller window"
            )
