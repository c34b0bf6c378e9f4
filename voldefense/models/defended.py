"""The defended classifier g as one `nn.Module`: volumizer → 3D backbone → aggregation.

Images `(B, C, H, W)` in [0, 1] go in, image-level scores `(B, K)` come out, so every attack — ART-backed or
adaptive, black- or white-box — sees and differentiates through the whole pipeline. The volumizer's ranking is
not differentiated, but gradients flow through its gather to the pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from voldefense.models.aggregation import Aggregate, Aggregation


class DefendedClassifier(nn.Module):
    """`forward(images) -> (B, K)`; `patch_logits(images) -> (B, N', K)` (what the Patch Aggregate Loss
    trains)."""

    def __init__(
        self, volumizer: nn.Module, backbone_3d: nn.Module, aggregation: Aggregation = "mean_logits"
    ):
        super().__init__()
        self.volumizer = volumizer
        self.backbone = backbone_3d
        self.aggregate = Aggregate(aggregation)

    @property
    def aggregation(self) -> str:
        return self.aggregate.method

    @property
    def patches_independent(self) -> bool:
        """Whether, in eval mode, each patch's logits provably depend on that patch's pixels only.

        Declared by the 3D backbone (`Patchwise`, f run on each patch alone, declares it by construction);
        a backbone that does not declare it is assumed to mix patches. With it, the volumizer's ranking only
        permutes independent votes: the premise of the majority-vote certificate (docs/certification.md).
        """
        return getattr(self.backbone, "patches_independent", False) is True

    @property
    def stochastic(self) -> bool:
        """Whether the forward pass draws randomness (a random patch order), so one classification is one draw."""
        return getattr(self.volumizer, "stochastic", False) is True

    def patch_logits(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(
                f"DefendedClassifier expects images (B, C, H, W), got shape {tuple(images.shape)}"
            )
        return self.backbone(self.volumizer(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.patch_logits(images))
