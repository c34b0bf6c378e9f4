"""Mutual information (MI) between a sample and a reference: ``I(x; r) = H(x) + H(r) - H(x, r)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch


class MutualInformation:
    """Mutual information in bits between the paired intensities of each sample and the reference.

    Pixels are paired by position (and channel); the joint histogram has `bins` x `bins` cells but is never
    materialised for all samples at once (see `_histogram.sum_clogc`).
    """

    def __init__(self, bins: int = _options.DEFAULT_BINS):
        self.bins = _options.check_bins(bins)

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        from voldefense.plugins.metrics import _histogram as hist  # torch: imported on first use only

        x = hist.check_samples(x)
        ref = hist.broadcast_reference(x, reference, "mi")
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
    )
