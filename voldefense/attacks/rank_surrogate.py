"""The ranking mechanism as an attacker sees it: find the volumizer inside a model, score its patches with a
differentiable surrogate of the ranking metric (`MetricSpec.surrogate`, else the metric itself when it is
differentiable), measure exact ranks, and the hinge penalty that steers one patch to a chosen depth. Used by
`voldefense.attacks.rank_steering` (the `patch_rank` attack); see that module's doc for the method.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# -- finding the mechanism ---------------------------------------------------------------------------------


def find_volumizer(model: nn.Module) -> Any | None:
    """The first `voldefense.volumizer.Volumizer` among `model`'s submodules, or None.

    A `DefendedClassifier` keeps it as `.volumizer`; wrappers (query counters, defenses in front) are searched
    through."""
    from voldefense.volumizer import Volumizer

    direct = getattr(model, "volumizer", None)
    if isinstance(direct, Volumizer):
        return direct
    for module in model.modules():
        if isinstance(module, Volumizer):
            return module
    return None


# -- differentiable surrogate of the ranking metric ---------------------------------------------------------


class MetricSurrogate:
    """Differentiable scores `(B, N)` of a volumizer's patches under its ranking metric (see module doc).

    `kind` is "declared" (the spec's `surrogate`) or "exact" (the metric itself is differentiable).
    `available` is False when the volumizer does not rank by a metric (identity / random ranking: there is
    nothing to steer) or the metric is neither differentiable nor declares a surrogate; `reason` then says why.
    """

    def __init__(self, volumizer: Any) -> None:
        self.volumizer = volumizer
        self.available = False
        self.kind = "none"
        self.reason = ""
        if volumizer is None:
            self.reason = "no Volumizer found inside the model"
            return
        if volumizer.ranking != "metric":
            self.reason = f"the volumizer's ranking is {volumizer.ranking!r}, not metric-driven"
            return
        from voldefense.ranking import is_descending

        self.spec = volumizer.metric_spec
        self.descending = is_descending(volumizer.order, self.spec)
        declared = self.spec.build_surrogate(**volumizer.metric_options)
        if declared is not None:
            self.metric_fn, self.available, self.kind = declared, True, "declared"
            return
        self.metric_fn = self.spec.build(**volumizer.metric_options)
        # a private generator: probing the metric must not move the global random state
        probe = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
        with torch.enable_grad():
            try:
                out = self.metric_fn(probe, probe.detach()[:1])
            except Exception:  # noqa: BLE001 - a metric that cannot score the probe is simply not used directly
                out = None
        if isinstance(out, torch.Tensor) and out.requires_grad:
            self.available, self.kind = True, "exact"
        else:
            self.reason = f"metric {self.spec.name!r} is not differentiable and declares no surrogate"

    def reference(self, patches: torch.Tensor) -> torch.Tensor | None:
        """Each image's reference patch `(B, 1, C, ph, pw)` (detached), as the exact ranking picks it."""
        if not self.spec.distance:
            return None
        from voldefense.ranking import lowest_entropy_index

        b = patches.shape[0]
        ref = self.volumizer.reference
        if isinstance(ref, torch.Tensor):
            ref = ref.detach().to(patches.device, patches.dtype)
            return ref.reshape(-1, 1, *patches.shape[2:]).expand(b, 1, *patches.shape[2:])
        if ref == "auto":
            index = lowest_entropy_index(patches.detach(), self.volumizer.metric_options)
        else:
            index = torch.full((b,), int(ref), dtype=torch.long)
        return patches.detach()[torch.arange(b, device=patches.device), index.to(patches.device)].unsqueeze(1)

    def scores(self, patches: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """Surrogate scores `(B, M)` of `patches` `(B, M, C, ph, pw)` (differentiable)."""
        b, m = patches.shape[:2]
        flat = patches.reshape(b * m, *patches.shape[2:])
        ref = None if reference is None else reference.expand(b, m, *patches.shape[2:]).reshape(flat.shape)
        return self.metric_fn(flat, ref).reshape(b, m)

    def keys(self, patches: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """Sort keys: ascending keys = ascending ranks (scores negated when the order is descending)."""
        s = self.scores(patches, reference)
        return -s if self.descending else s


def _reference_guard(patches: torch.Tensor, main: torch.Tensor, surrogate: MetricSurrogate) -> torch.Tensor:
    """`(B,)` term that raises the main patch's (soft) entropy while its exact entropy is within 0.1 bit of the
    lowest of the other patches, so it does not become the ``"auto"`` reference (the lowest-entropy patch).

    The decision uses the exact entropy the ranking uses: the soft one smooths concentrated histograms upward
    and would let the patch slip under the others unnoticed."""
    from voldefense.ranking import reference_entropy, reference_entropy_surrogate

    b, n = patches.shape[:2]
    options = surrogate.volumizer.metric_options
    rows = torch.arange(b, device=patches.device)
    with torch.no_grad():
        entropy = reference_entropy(options)(patches.detach().flatten(0, 1)).view(b, n)
        own_exact = entropy[rows, main].clone()
        entropy[rows, main] = float("inf")
        active = own_exact < entropy.amin(1) + 0.1
    own = reference_entropy_surrogate(options)(patches[rows, main])
    return -own * active.to(own.dtype)


def exact_ranks(volumizer: Any, images: torch.Tensor) -> torch.Tensor:
    """`(B, N)` depth position of every source patch under the volumizer's exact ranking."""
    with torch.no_grad():
        perm, _ = volumizer.rank(volumizer.patches(images.detach()))
    return perm.argsort(dim=1).cpu()


def rank_penalty(keys: torch.Tensor, main: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge penalty `(B,)`, zero when patch `main[b]`'s key would sort at depth `target[b]` among the others.

    `keys` `(B, N)`: only the main patch's key carries gradient that matters (the others are detached: the
    attacker's pixels live in the main patch). The main key must lie above the `target`-th smallest other key
    and below the next one, each with a `margin` (a share of the key spread) so that the exact ranking, not
    only the surrogate, moves.
    """
    b, n = keys.shape
    rows = torch.arange(b, device=keys.device)
    k_main = keys[rows, main]
    others = keys.detach().clone()
    others[rows, main] = float("inf")
    ordered = others.sort(dim=1).values[:, : n - 1]  # the N-1 other keys, ascending
    spread = (ordered.amax(1) - ordered.amin(1)).clamp(min=1e-6)
    lo_idx = (target - 1).clamp(min=0)
    hi_idx = target.clamp(max=n - 2)
    lower = torch.where(target > 0, ordered[rows, lo_idx], torch.full_like(k_main, -float("inf")))
    upper = torch.where(target < n - 1, ordered[rows, hi_idx], torch.full_like(k_main, float("inf")))
    # An inner target is a gap between two neighbours: a margin wider than half the gap would make the two
    # hinges fight, so it is capped at a quarter of the gap.
    gap = (upper - lower).nan_to_num(float("inf"), posinf=float("inf"))
    m = torch.minimum(margin * spread, gap / 4)
    below = F.relu(lower + m - k_main).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    above = F.relu(k_main - upper + m).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    return (below + above) / spread
