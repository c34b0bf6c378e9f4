"""KL divergence between a sample's and the reference's intensity histograms: ``D(p_x || p_r)``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.plugins.metrics._distance import DistanceMetric
from voldefense.specs import MetricSpec, lazy_factory

if TYPE_CHECKING:
    import torch

DEFAULT_SMOOTHING = 0.5


class KLDivergence(DistanceMetric):
    """``D(p_x || p_r) = sum_k p_k log2(p_k / q_k)`` in bits, with additive smoothing.

    Both histograms get `smoothing` pseudo-counts per bin before normalising,
    ``p_k = (c_k + smoothing) / (n + bins * smoothing)`` (0.5 is the Krichevsky-Trofimov estimator), so every
    bin is non-empty and the divergence is always finite; identical histograms give exactly 0.
    """

    name = "kl"

    def __init__(self, bins: int = _options.DEFAULT_BINS, smoothing: float = DEFAULT_SMOOTHING):
        self.bins = _options.check_bins(bins)
        self.smoothing = _options.check_positive(smoothing, "kl smoothing (pseudo-counts per bin)")

    def _score(self, hist: Any, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        g, m, n = x.shape
        denominator = n + self.bins * self.smoothing
        p = (hist.histograms(x.reshape(g * m, n), self.bins) + self.smoothing) / denominator
        # The reference's histogram once per reference row (one per group), broadcast over the samples.
        q = (hist.histograms(ref.reshape(-1, n), self.bins) + self.smoothing) / denominator
        p, q = p.view(g, m, self.bins), q.view(*ref.shape[:2], self.bins)
        return ((p * (p.log() - q.log())).sum(-1) / math.log(2.0)).clamp_(min=0)

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
        # differentiable stand-in (soft bins) for attacks that steer the ranking
        surrogate=lazy_factory("voldefense.plugins.metrics._soft_histogram:SoftKLDivergence"),
    )
