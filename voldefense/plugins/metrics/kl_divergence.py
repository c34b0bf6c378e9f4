"""KL divergence between a sample's and the reference's intensity histograms: ``D(p_x || p_r)``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch

DEFAULT_SMOOTHING = 0.5


class KLDivergence:
    """``D(p_x || p_r) = sum_k p_k log2(p_k / q_k)`` in bits, with additive smoothing.

    Both histograms get `smoothing` pseudo-counts per bin before normalising,
    ``p_k = (c_k + smoothing) / (n + bins * smoothing)`` (0.5 is the Krichevsky-Trofimov estimator), so every
    bin is non-empty and the divergence is always finite; identical histograms give exactly 0.
    """

    def __init__(self, bins: int = _options.DEFAULT_BINS, smoothing: float = DEFAULT_SMOOTHING):
        self.bins = _options.check_bins(bins)
        self.smoothing = _options.check_positive(smoothing, "kl smoothing (pseudo-counts per bin)")

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        from voldefense.plugins.metrics import _histogram as hist  # torch: imported on first use only

        x = hist.check_samples(x)
        ref = hist.broadcast_reference(x, reference, "kl")
        n = x[0].numel() if x.shape[0] else 1
        denominator = n + self.bins * self.smoothing
        p = (hist.histograms(x, self.bins) + self.smoothing) / denominator
        q = (hist.histograms(ref, self.bins) + self.smoothing) / denominator
        return ((p * (p.log() - q.log())).sum(1) / math.log(2.0)).clamp_(min=0)

    def __repr__(self) -> str:
        return f"KLDivergence(bins={self.bins}, smoothing={self.smoothing})"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="kl",
        factory=KLDivergence,
        description="KL divergence (bits) of the intensity histogram from the reference's; smoothed, finite",
        distance=True,
        larger_is_simpler=False,
    )
