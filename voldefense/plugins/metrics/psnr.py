"""Peak signal-to-noise ratio (PSNR) of a sample against a reference: ``10 log10(range^2 / MSE)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from voldefense.hookspecs import hookimpl
from voldefense.plugins.metrics import _options
from voldefense.plugins.metrics._distance import DistanceMetric
from voldefense.specs import MetricSpec

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_DB = 100.0


class PSNR(DistanceMetric):
    """PSNR in dB, capped at `max_db`: identical inputs (MSE = 0) score exactly `max_db` (default 100 dB),
    never inf or NaN, and no sample scores above it."""

    name = "psnr"

    def __init__(self, data_range: float = 1.0, max_db: float = DEFAULT_MAX_DB):
        self.data_range = _options.check_positive(data_range, "psnr data_range")
        self.max_db = _options.check_positive(max_db, "psnr max_db")

    def _score(self, hist: Any, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return hist.pixel_distance(x, ref, "mse", post=self._decibels)

    def _decibels(self, mse: torch.Tensor) -> torch.Tensor:
        import torch

        # mse == 0 would give log10(0) = -inf; substitute 1 (any positive number) and overwrite with max_db.
        db = 10.0 * torch.log10(self.data_range**2 / torch.where(mse > 0, mse, torch.ones_like(mse)))
        return torch.where(mse > 0, db.clamp(max=self.max_db), torch.full_like(db, self.max_db))

    def __repr__(self) -> str:
        return f"PSNR(data_range={self.data_range}, max_db={self.max_db})"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="psnr",
        factory=PSNR,
        description="peak signal-to-noise ratio (dB) to the reference, capped at 100; larger = more similar",
        distance=True,
        larger_is_simpler=True,
    )
