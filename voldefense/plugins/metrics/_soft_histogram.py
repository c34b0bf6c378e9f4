"""Differentiable surrogates of the built-in histogram metrics (`MetricSpec.surrogate`).

The exact metrics count pixels into hard intensity bins, so their scores are piecewise constant in the pixels
and have no useful gradient. The surrogates bin softly: each value spreads over its two nearest bin centres
with triangular (linear-interpolation) weights, and the same entropy / joint entropy / KL formulas run on the
soft histograms. They take the metric's own options and follow its conventions (channels pooled, bits).
Attacks that steer the volumizer's ranking (`patch_rank`) differentiate them; the ranking itself always uses the
exact metric. Imports torch: the plugin modules name these classes through `lazy_factory`.
"""

from __future__ import annotations

import math

import torch

from voldefense.errors import UsageError
from voldefense.plugins.metrics import _options
from voldefense.plugins.metrics.kl_divergence import DEFAULT_SMOOTHING

_LN2 = math.log(2.0)


def soft_bins(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Triangular (linear-interpolation) bin weights `(M, n, bins)` of values `(M, n)` in [0, 1]; each value's
    weights sum to 1 (all on one bin when the value sits on its centre)."""
    # Centres at k / (bins - 1), so 0 and 1 are centres: saturated values (where loss steps push pixels) keep a
    # gradient toward the inner bins instead of sitting on a clamped, flat edge.
    pos = values.clamp(0, 1) * (bins - 1)
    centres = torch.arange(bins, device=values.device, dtype=values.dtype)
    return (1 - (pos.unsqueeze(-1) - centres).abs()).clamp(min=0)


def entropy_bits(p: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return -(p * p.clamp(min=1e-12).log()).sum(dims) / _LN2


class SoftEntropy:
    """Soft-binned entropy (bits) of each sample `(M, ...)` -> `(M,)`; the reference is ignored."""

    def __init__(self, bins: int = _options.DEFAULT_BINS):
        self.bins = _options.check_bins(bins)

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        return entropy_bits(soft_bins(x.flatten(1), self.bins).mean(1), (1,))


class _SoftDistance:
    """A soft-binned distance metric: samples `(M, ...)` against a reference broadcastable to them."""

    name = ""

    def __init__(self, bins: int = _options.DEFAULT_BINS):
        self.bins = _options.check_bins(bins)

    def __call__(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if reference is None:
            raise UsageError(f"metric {self.name!r} is a distance metric: its surrogate needs a reference")
        flat = x.flatten(1)
        ref = torch.broadcast_to(reference, x.shape).flatten(1).to(flat.dtype)
        return self._score(soft_bins(flat, self.bins), soft_bins(ref, self.bins))

    def _score(self, wx: torch.Tensor, wr: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _joint_entropy(wx: torch.Tensor, wr: torch.Tensor) -> torch.Tensor:
    joint = torch.einsum("mni,mnj->mij", wx, wr) / wx.shape[1]
    return entropy_bits(joint, (1, 2))


class SoftJointEntropy(_SoftDistance):
    """Soft-binned joint entropy (bits) of each sample's and the reference's paired intensities."""

    name = "joint_entropy"

    def _score(self, wx: torch.Tensor, wr: torch.Tensor) -> torch.Tensor:
        return _joint_entropy(wx, wr)


class SoftMutualInformation(_SoftDistance):
    """Soft-binned mutual information (bits) ``H(x) + H(r) - H(x, r)``."""

    name = "mi"

    def _score(self, wx: torch.Tensor, wr: torch.Tensor) -> torch.Tensor:
        return entropy_bits(wx.mean(1), (1,)) + entropy_bits(wr.mean(1), (1,)) - _joint_entropy(wx, wr)


class SoftKLDivergence(_SoftDistance):
    """Soft-binned KL divergence (bits) with the exact metric's additive smoothing, so both are finite and
    comparable."""

    name = "kl"

    def __init__(self, bins: int = _options.DEFAULT_BINS, smoothing: float = DEFAULT_SMOOTHING):
        super().__init__(bins)
        self.smoothing = _options.check_positive(smoothing, "kl smoothing (pseudo-counts per bin)")

    def _score(self, wx: torch.Tensor, wr: torch.Tensor) -> torch.Tensor:
        n, s = wx.shape[1], self.smoothing
        p = (wx.sum(1) + s) / (n + self.bins * s)
        q = (wr.sum(1) + s) / (n + self.bins * s)
        return (p * (p.log() - q.log())).sum(1) / _LN2
