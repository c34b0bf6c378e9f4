"""Image-level predictions from per-patch logits `(B, N, K)` → `(B, K)`.

- ``mean_logits`` (default): the average of the patch logits.
- ``mean_probs``: the log of the average patch probabilities (a proper log-probability, so cross-entropy on
  it is
  the loss of the averaged classifier).
- ``majority_vote``: each patch votes for its arg-max class; the value is the fraction of votes per class
  plus a
  tie-break of less than half a vote (the mean probability divided by 2N), so the arg-max is the majority
  class
  and ties go to the class with the higher mean probability. Votes have zero gradient almost everywhere, which
  would mask gradients from white-box attacks; the backward pass therefore uses the gradient of the mean
  probabilities instead (a straight-through / BPDA-style surrogate: forward = votes, backward = d mean_probs).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from voldefense.errors import ConfigError

Aggregation = Literal["mean_logits", "mean_probs", "majority_vote"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


def check_aggregation(method: object) -> str:
    if method not in AGGREGATIONS:
        raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {method!r}")
    return str(method)


def aggregate(patch_logits: torch.Tensor, method: Aggregation = "mean_logits") -> torch.Tensor:
    """Combine per-patch logits `(B, N, K)` into image-level scores `(B, K)` (see the module docstring)."""
    check_aggregation(method)
    if patch_logits.dim() != 3:
        raise ValueError(f"per-patch logits must be (B, N, K), got shape {tuple(patch_logits.shape)}")
    n = patch_logits.shape[1]
    if method == "mean_logits":
        return patch_logits.mean(1)
    log_probs = torch.log_softmax(patch_logits, dim=-1)
    mean_log_probs = torch.logsumexp(log_probs, dim=1) - math.log(n)
    if method == "mean_probs":
        return mean_log_probs
    mean_probs = mean_log_probs.exp()
    votes = (
        nn.functional.one_hot(patch_logits.argmax(-1), patch_logits.shape[-1]).to(patch_logits.dtype).mean(1)
    )
    value = votes + mean_probs.detach() / (2 * n)
    # Straight-through: the forward value is `value`, the gradient is that of the mean probabilities.
    return value + (mean_probs - mean_probs.detach())


class Aggregate(nn.Module):
    """`aggregate` as a module, so the method shows in the model's repr and state."""

    def __init__(self, method: Aggregation = "mean_logits"):
        super().__init__()
        self.method = check_aggregation(method)

    def forward(self, patch_logits: torch.Tensor) -> torch.Tensor:
        return aggregate(patch_logits, self.method)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"method={self.method!r}"
