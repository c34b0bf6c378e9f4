"""Mutual information (MI) between a sample and a reference: ``I(x; r) = H(x) + H(r) - H(x, r)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.plugins.metrics._distance import DistanceMetric
from voldefense.specs import MetricSpec, lazy_factory

if TYPE_CHECKING:
    import torch


class MutualInformation(DistanceMetric):
    """Mutual information in bits between the paired intensities of each sample and the reference.

    Pixels are paired by position (and channel); the joint histogram has `bins` x `bins` cells but is never
    materialised for all samples at once (see `_histogram.joint_entropies`).
    """

    name = "mi"

    def __init__(self, bins: int = _options.DEFAULT_BINS):
        self.bins = _options.check_bins(bins)

    def _score(self, hist: Any, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        h_xr, h_x, h_r = hist.joint_entropies(x, ref, self.bins)
        # The plug-in estimate is >= 0 exactly; clamp away float rounding so MI never reads as negative.
        return (h_x + h_r - h_xr).clamp_(min=0)

    def __repr__(self) -> str:
        return f"MutualInformation(bins={self.bins})"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="mi",
        factory=MutualInformation,
        description="mutual information (bits) with the reference; larger = more similar",
        distance=True,
        larger_is_simpler=True,
        # differentiable stand-in (soft bins) for attacks that steer the ranking
        surrogate=lazy_factory("voldefense.plugins.metrics._soft_histogram:SoftMutualInformation"),
    )
