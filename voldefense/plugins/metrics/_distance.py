"""Base class of the built-in distance metrics: one scoring routine for the flat and the grouped call.

Torch-free at import, like the plugin modules themselves (listing plugins must stay cheap).

The plugin contract is the flat call ``metric(x (M, C, h, w), reference) -> (M,)``. A distance metric may
also offer ``grouped(x (G, M, C, h, w), reference) -> (G, M)`` with a reference broadcastable to ``x`` (one
per group: ``(G, 1, C, h, w)``), equal to calling it on each group; `voldefense.ranking` uses it when
present, so a per-image reference patch is broadcast instead of copied once per patch. Third-party metrics
may implement it too; without it the ranking falls back to the flat call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class DistanceMetric:
    """Subclasses set `name` and implement `_score(hist, x (G, M, n), ref (G|1, M|1, n)) -> (G, M)`."""

    name: str = ""

    def _score(self, hist: Any, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        from voldefense.plugins.metrics import _histogram as hist  # torch: imported on first use only

        x3, ref3 = hist.pair_flat(hist.check_samples(x), reference, self.name)
        return self._score(hist, x3, ref3)[0]

    def grouped(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Scores `(G, M)` of groups of samples `x` `(G, M, C, h, w)` against a reference broadcastable to
        `x` (typically one per group, `(G, 1, C, h, w)`), without expanding the reference."""
        from voldefense.plugins.metrics import _histogram as hist

        x3, ref3 = hist.pair_groups(hist.check_groups(x), reference, self.name)
        return self._score(hist, x3, ref3)
