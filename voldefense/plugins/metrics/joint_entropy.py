"""Joint entropy (JE) of a sample and a reference: ``H(x, r) = -sum_ij p_ij log2 p_ij``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch


class JointEntropy:
    """Joint entropy in bits of the position-paired intensities of each sample and the reference."""

    def __init__(self, bins: int = _options.DEFAULT_BINS):
        self.bins = _options.check_bins(bins)

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        from voldefense.plugins.metrics import _histogram as hist  # torch: imported on first use only

        x = hist.check_samples(x)
        ref = hist.broadcast_reference(x, reference, "joint_entropy")
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
    )
