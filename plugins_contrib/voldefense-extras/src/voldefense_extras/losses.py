"""Patch-weighted Patch Aggregate Loss.

PAL (the paper's eq. 10) sums the per-patch cross-entropy against the image label over the N depth slices of a
volume, treating every slice alike. But the slices are *ranked* by the volumizer's information metric, so
slice i always holds the i-th simplest (or most complex) patch of its image: low-information slices (flat
background) carry little evidence of the class, yet plain PAL weighs them as much as the informative ones.
This loss weights slice i by ``w_i``, either a geometric profile ``decay**i`` or explicit per-slice weights,
normalised to mean 1 so the loss keeps PAL's scale (and ``decay=1`` is exactly PAL).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from voldefense.errors import ConfigError


class PatchWeightedAggregateLoss:
    """``loss(logits (B, N, K), labels (B,)) -> scalar``: ``mean_b sum_i w_i CE(logits[b, i], labels[b])``.

    ``decay``: weight ratio between consecutive slices (``< 1`` favours the first slices of the volume,
    ``> 1`` the last). ``weights``: explicit non-negative weights, one per slice (overrides ``decay``; their
    count must match N at call time). ``label_smoothing`` as in cross-entropy. Weights are rescaled to mean 1.
    """

    def __init__(
        self, *, decay: float = 1.0, weights: Sequence[float] | None = None, label_smoothing: float = 0.0
    ) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay > 0:
            raise ConfigError(f"pal_weighted: decay must be a positive number, got {decay!r}")
        if weights is not None:
            if isinstance(weights, (str, bytes)) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights
            ):
                raise ConfigError(f"pal_weighted: weights must be non-negative numbers, got {weights!r}")
            if not weights or sum(weights) <= 0:
                raise ConfigError("pal_weighted: weights need at least one positive entry")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"pal_weighted: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.decay = float(decay)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.label_smoothing = float(label_smoothing)

    def slice_weights(self, num_slices: int, *, device: torch.device | None = None) -> Tensor:
        """The ``(N,)`` weights for a volume of `num_slices` slices, mean 1."""
        if self.weights is not None:
            if len(self.weights) != num_slices:
                raise ConfigError(
                    f"pal_weighted: {len(self.weights)} weights given but the model outputs {num_slices} "
                    "patches; give one weight per patch (or use decay)"
                )
            w = torch.tensor(self.weights, dtype=torch.float64)
        else:
            w = self.decay ** torch.arange(num_slices, dtype=torch.float64)
        return (w * num_slices / w.sum()).to(device=device, dtype=torch.float32)

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.dim() != 3:
            raise ValueError(f"pal_weighted expects per-patch logits (B, N, K), got {tuple(logits.shape)}")
        b, n, k = logits.shape
        if labels.shape != (b,):
            raise ValueError(f"pal_weighted expects labels of shape ({b},), got {tuple(labels.shape)}")
        per_patch = F.cross_entropy(
            logits.reshape(b * n, k),
            labels.repeat_interleave(n),
            label_smoothing=self.label_smoothing,
            reduction="none",
        ).view(b, n)
        weights = self.slice_weights(n, device=logits.device).to(per_patch.dtype)
        return (per_patch * weights).sum(1).mean()
