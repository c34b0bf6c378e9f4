"""Training losses: cross-entropy on image logits (for f) and the Patch Aggregate Loss (for g).

PAL (paper eq. 10): for a volume of N patches with per-patch logits `z_n` and image label `y`,
``PAL = sum_n CE(z_n, y)``, averaged over the batch. Every patch is asked to predict the image's class, which
is
what lets an image-level vote survive a few corrupted patches.
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
    """Sum over patches of the per-patch cross-entropy against the image label, mean over the batch.

    `patch_reduction="mean"` divides by N (the same minimiser; a learning rate that does not depend on N).
    """

    def __init__(self, label_smoothing: float = 0.0, patch_reduction: Literal["sum", "mean"] = "sum"):
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
