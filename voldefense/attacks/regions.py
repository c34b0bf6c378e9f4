"""Geometry and bookkeeping shared by the attacks: input checks, patch sides from area fractions, random
locations, differentiable pasting, pixel budgets and query counting."""

from __future__ import annotations

import math

import torch
from torch import nn

from voldefense.errors import ConfigError, TensorError


def check_inputs(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Images `(B, C, H, W)` float in [0, 1] and labels `(B,)` integer: anything else is the caller's
    mistake."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise TensorError(f"attack images must be a (B, C, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise TensorError(
            f"attack images must be float in [0, 1], got dtype {images.dtype}; divide uint8 by 255"
        )
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise TensorError("attack images must lie in [0, 1]; normalisation belongs inside the model")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise TensorError(
            f"attack labels must be integer class indices of shape ({images.shape[0]},), "
            f"got {tuple(labels.shape)}"
        )


def pixel_budget(size: float, height: int, width: int) -> int:
    """A pixel-count `size` as an int in 1..H*W."""
    n = int(round(float(size)))
    if abs(float(size) - n) > 1e-9 or not 1 <= n <= height * width:
        raise ConfigError(f"pixel budget must be a whole number from 1 to {height * width} (H*W), got {size}")
    return n


def patch_sides(area: float, height: int, width: int) -> tuple[int, int]:
    """Height and width of a patch covering `area` (fraction of the image area) with the image's aspect
    ratio."""
    area = float(area)
    if not 0.0 < area <= 1.0:
        raise ConfigError(f"patch area must be a fraction in (0, 1] of the image area, got {area}")
    scale = math.sqrt(area)
    return max(1, min(height, round(scale * height))), max(1, min(width, round(scale * width)))


def random_locations(
    n: int, side_h: int, side_w: int, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """`(n, 2)` top-left corners (row, col) of a `side_h x side_w` patch fully inside the image, uniform."""
    rows = torch.randint(0, height - side_h + 1, (n,), generator=generator)
    cols = torch.randint(0, width - side_w + 1, (n,), generator=generator)
    return torch.stack([rows, cols], dim=1)


def box_mask(locations: torch.Tensor, side_h: int, side_w: int, height: int, width: int) -> torch.Tensor:
    """`(n, 1, H, W)` float mask, 1 inside each image's patch box."""
    rows = torch.arange(height).view(1, height, 1)
    cols = torch.arange(width).view(1, 1, width)
    r0 = locations[:, 0].view(-1, 1, 1).cpu()
    c0 = locations[:, 1].view(-1, 1, 1).cpu()
    inside = (rows >= r0) & (rows < r0 + side_h) & (cols >= c0) & (cols < c0 + side_w)
    return inside.unsqueeze(1).float()


def paste(images: torch.Tensor, patch: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """Paste `patch` `(C, h, w)` into each image at its `(row, col)` top-left corner; differentiable in
    `patch`."""
    _, side_h, side_w = patch.shape
    out = images.clone()
    for i, (r, c) in enumerate(locations.tolist()):
        out[i, :, r : r + side_h, c : c + side_w] = patch
    return out


def changed_pixels(adversarial: torch.Tensor, clean: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Number of pixel *locations* (all channels of a pixel count once) where the images differ by more
    than tol.

    Works on `(B, C, H, W)` (returns `(B,)`) and `(R, B, C, H, W)` (returns `(R, B)`)."""
    return ((adversarial - clean).abs() > tol).any(dim=-3).flatten(-2).sum(-1)


def generator_for(seed: int) -> torch.Generator:
    """A CPU generator: draws on CPU keep results identical on every device."""
    return torch.Generator().manual_seed(int(seed))


def model_device(model: nn.Module, default: torch.device) -> torch.device:
    for p in model.parameters():
        return p.device
    return default


class QueryCounter(nn.Module):
    """Wraps a model and counts the images it has been asked to classify (one query per image per forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += int(x.shape[0])
        return self.model(x)
