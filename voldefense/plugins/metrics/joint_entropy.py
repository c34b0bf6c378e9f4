"""Joint entropy (JE) of a sample and a reference: ``H(x, r) = -sum_ij p_ij log2 p_ij``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.plugins.metrics._distance import DistanceMetric
from voldefense.specs import MetricSpec, lazy_factory

if TYPE_CHECKING:
    import torch


class JointEntropy(DistanceMetric):
    """Joint entropy in bits of the position-paired intensities of each sample and the reference."""

    name = "joint_entropy"

    def __init__(self, bins: int = _options.DEFAULT_BINS):
        self.bins = _options.check_bins(bins)

    def _score(self, hist: Any, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return hist.joint_entropies(x, ref, self.bins, marginals=False)[0]

    def __repr__(self) -> str:
        return f"JointEntropy(bins={self.bins})"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="joint_entropy",
        factory=JointEntropy,
        description="joint entropy (bits) of sample and reference intensities; larger = more complex",
        distance=True,
        larger_is_simpler=False,
        # differentiable stand-in (soft bins) for attacks that steer the ranking
        surrogate=lazy_factory("voldefense.plugins.metrics._soft_histogram:SoftJointEntropy"),
    )
