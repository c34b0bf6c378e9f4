"""Entropy (H), the standalone metric: ``H(x) = -sum_k p_k log2 p_k`` over a sample's intensity histogram."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.specs import MetricSpec, lazy_factory

if TYPE_CHECKING:
    import torch


class Entropy:
    """Shannon entropy in bits of each sample's intensity histogram (all channels pooled, `bins` bins)."""

    def __init__(self, bins: int = _options.DEFAULT_BINS):
        self.bins = _options.check_bins(bins)

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        # A standalone metric: the reference is accepted (uniform call signature) and ignored.
        from voldefense.plugins.metrics import _histogram as hist  # torch: imported on first use only

        x = hist.check_samples(x)
        return hist.entropy(x, self.bins)

    def __repr__(self) -> str:
        return f"Entropy(bins={self.bins})"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="entropy",
        factory=Entropy,
        description="Shannon entropy (bits) of the intensity histogram; standalone",
        distance=False,
        larger_is_simpler=False,
        # differentiable stand-in (soft bins) for attacks that steer the ranking
        surrogate=lazy_factory("voldefense.plugins.metrics._soft_histogram:SoftEntropy"),
    )
