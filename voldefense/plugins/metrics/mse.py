"""Mean squared error (MSE) between a sample and the reference: ``mean_i (x_i - r_i)^2``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics._distance import DistanceMetric
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch


class MSE(DistanceMetric):
    """Mean squared difference over all channels and pixels of each sample."""

    name = "mse"

    def _score(self, hist: Any, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return hist.pixel_distance(x, ref, "mse")

    def __repr__(self) -> str:
        return "MSE()"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="mse",
        factory=MSE,
        description="mean squared error against the reference; larger = more different",
        distance=True,
        larger_is_simpler=False,
    )
