"""Max norm (MN): the L-infinity distance ``max_i |x_i - r_i|`` between a sample and the reference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics._distance import DistanceMetric
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch


class MaxNorm(DistanceMetric):
    """L-infinity distance over all channels and pixels of each sample."""

    name = "max_norm"

    def _score(self, hist: Any, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return hist.pixel_distance(x, ref, "max_abs")

    def __repr__(self) -> str:
        return "MaxNorm()"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="max_norm",
        factory=MaxNorm,
        description="L-infinity distance to the reference; larger = more different",
        distance=True,
        larger_is_simpler=False,
    )
