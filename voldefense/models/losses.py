"""Training losses: cross-entropy on image logits (for f) and the Patch Aggregate Loss (for g).

PAL (paper eq. 10): for a volume of N patches with per-patch logits `z_n` and image label `y`,
``PAL = sum_n CE(z_n, y)``, averaged over the batch. Every patch is asked to predict the image's class, which
is what lets an image-level vote survive a few corrupted patches.

The default here is ``patch_reduction="mean"`` (``PAL / N``): the same minimiser, but a gradient that does not
grow with N. The paper's sum multiplies the gradient by N, which under SGD multiplies the effective learning
rate by N (x4 on CIFAR with 16x16 patches, x196 on ImageNet) — a setting silently much hotter than the one
stated. Adam is (up to its epsilon) invariant to that scale. `voldefense.config.training_checks` warns at load
time when a config combines the sum with SGD.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from voldefense.errors import ConfigError, TensorError


def _check_smoothing(label_smoothing: float) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, int | float):
        raise ConfigError(f"label_smoothing must be a number in [0, 1), not {label_smoothing!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), not {label_smoothing!r}")
    return float(label_smoothing)


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy of image logits `(B, K)` against labels `(B,)`."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2:
            raise TensorError(
                f"loss 'cross_entropy' expects image logits (B, K), got shape {tuple(logits.shape)}; for "
                "per-patch "
                "logits (B, N, K) of a 3D model use loss 'pal'"
            )
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)


class PatchAggregateLoss(nn.Module):
    """Per-patch cross-entropy against the image label, reduced over patches, mean over the batch.

    `patch_reduction="mean"` (default) averages over the N patches: a learning rate that does not depend on N.
    `"sum"` is the paper's eq. 10 literally; under SGD it scales the effective learning rate by N.
    """

    def __init__(self, label_smoothing: float = 0.0, patch_reduction: Literal["sum", "mean"] = "mean"):
        super().__init__()
        self.label_smoothing = _check_smoothing(label_smoothing)
        if patch_reduction not in ("sum", "mean"):
            raise ConfigError(
                f"patch_reduction must be 'sum' (paper eq. 10) or 'mean', not {patch_reduction!r}"
            )
        self.patch_reduction = patch_reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 3:
            raise TensorError(
                f"loss 'pal' expects per-patch logits (B, N, K), got shape {tuple(logits.shape)}; for image "
                "logits (B, K) of a 2D model use loss 'cross_entropy'"
            )
        b, n, k = logits.shape
        per_patch = F.cross_entropy(
            logits.reshape(b * n, k),
            labels.repeat_interleave(n),
            reduction="none",
            label_smoothing=self.label_smoothing,
        ).view(b, n)
        per_image = per_patch.sum(1) if self.patch_reduction == "sum" else per_patch.mean(1)
        return per_image.mean()
