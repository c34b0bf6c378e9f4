"""Max norm (MN): the L-infinity distance ``max_i |x_i - r_i|`` between a sample and the reference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from voldefense.hookspecs import hookimpl
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch


class MaxNorm:
    """L-infinity distance over all channels and pixels of each sample."""

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        from voldefense.plugins.metrics import _histogram as hist  # torch: imported on first use only

        x = hist.check_samples(x)
        ref = hist.broadcast_reference(x, reference, "max_norm")
        return hist.rowwise(lambda a, b: (a - b).abs().amax(dim=1), x, ref)

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
