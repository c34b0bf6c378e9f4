"""Mean squared error (MSE) between a sample and the reference: ``mean_i (x_i - r_i)^2``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from voldefense.hookspecs import hookimpl
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch


class MSE:
    """Mean squared difference over all channels and pixels of each sample."""

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        from voldefense.plugins.metrics import _histogram as hist  # torch: imported on first use only

        x = hist.check_samples(x)
        ref = hist.broadcast_reference(x, reference, "mse")
        return hist.rowwise(lambda a, b: (a - b).square().mean(dim=1), x, ref)

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
