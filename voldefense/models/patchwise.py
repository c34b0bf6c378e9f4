"""g without conversion: the 2D classifier f run on every patch alone (`depth_kernel` 1, no depth pooling).

With a depth kernel of 1 and no pooling along the patch axis, the volumetric g is by definition f's
architecture applied to each patch. `Patchwise` computes exactly that and nothing else: it folds the N patches
of a volume into the batch, runs the 2D network as it is and unfolds its logits to `(B, N, K)`. No layer is
converted, so any image classifier works — every kind of normalisation, attention, custom blocks.

Two consequences (docs/models.md): normalisation statistics are those of the 2D network on one patch
(LayerNorm, GroupNorm and InstanceNorm normalise each patch by itself; BatchNorm in training mode uses the
statistics of all B·N patches of the batch, as the Conv3d path does); and in eval mode each patch's logits
depend on that patch's pixels only, which is what the majority-vote certificate needs (`patches_independent`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from voldefense.errors import ArgumentTypeError, TensorError, UsageError


class Patchwise(nn.Module):
    """Volumes `(B, C, N, h, w)` → per-patch logits `(B, N, K)`: the 2D network `net` on each patch.

    `net` maps images `(B, C, h, w)` to logits `(B, K)`; its parameters are this module's, prefixed ``net.``
    (the names the converted Conv3d network uses, so a state dict of the Conv3d path with 1-deep kernels
    loads here: their depth axis is squeezed away on load).
    """

    patches_independent = True
    """Declared for the certificate: in eval mode, patch i's logits are a function of patch i alone (the
    patches are separate samples of one 2D batch, and every standard layer treats samples independently once
    BatchNorm uses its running statistics)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ArgumentTypeError(f"Patchwise needs the 2D network as an nn.Module, got {type(net).__name__}")
        self.net = net
        self.register_load_state_dict_pre_hook(_squeeze_one_deep_kernels)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        if volume.dim() != 5:
            raise TensorError(
                f"a 3D backbone expects volumes (B, C, N, h, w), got shape {tuple(volume.shape)}"
            )
        b, c, n, h, w = volume.shape
        logits = self.net(volume.transpose(1, 2).reshape(b * n, c, h, w))
        if not isinstance(logits, torch.Tensor) or logits.dim() < 2 or logits.shape[0] != b * n:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise UsageError(
                f"the 2D network run on each patch must return logits (B, K), got {got}; make its forward "
                "return one tensor of logits"
            )
        return logits.reshape(b, n, *logits.shape[1:])


def _squeeze_one_deep_kernels(module: Patchwise, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Accept the Conv3d path's 1-deep kernels `(out, in, 1, k, k)` for 2D ones `(out, in, k, k)`, so a
    checkpoint of g built with `fold: false` at depth kernel 1 loads into the folded g."""
    own = dict(module.named_parameters(prefix=prefix.rstrip(".") if prefix else ""))
    for name, tensor in list(state_dict.items()):
        target = own.get(name)
        if (
            target is not None
            and isinstance(tensor, torch.Tensor)
            and tensor.dim() == target.dim() + 1 == 5
            and tensor.shape[2] == 1
        ):
            state_dict[name] = tensor.squeeze(2)
