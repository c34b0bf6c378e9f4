"""Helpers for testing voldefense components and plugins: a toy task a tiny model learns in seconds.

Public so that plugin authors can write the same kind of tests as the built-ins (see docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def make_toy_images(
    n: int, *, image_size: int = 32, num_classes: int = 4, channels: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A spatial toy task: class k puts a bright square in region k of a grid over a noisy background.

    Returns images `(n, channels, image_size, image_size)` in [0, 1] and labels `(n,)`. The class is only
    visible in the spatial layout, so a model must learn spatial features; a tiny CNN reaches ~100% in seconds.
    """
    if num_classes < 2:
        raise ValueError("num_classes must be at least 2")
    g = torch.Generator().manual_seed(seed)
    grid = int(torch.tensor(num_classes).float().sqrt().ceil().item())
    cell = image_size // grid
    side = max(2, cell // 2)
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = 0.35 * torch.rand(n, channels, image_size, image_size, generator=g)
    for i in range(n):
        k = int(y[i])
        row, col = divmod(k, grid)
        r0 = row * cell + int(torch.randint(0, cell - side + 1, (1,), generator=g))
        c0 = col * cell + int(torch.randint(0, cell - side + 1, (1,), generator=g))
        colour = 0.7 + 0.3 * torch.rand(channels, 1, 1, generator=g)
        x[i, :, r0 : r0 + side, c0 : c0 + side] = colour
    return x.clamp(0, 1), y


def tiny_cnn(num_classes: int = 4, *, in_channels: int = 3, width: int = 8) -> nn.Module:
    """A two-convolution CNN for toy tests: images `(B, C, H, W)` → logits `(B, K)`."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * width, num_classes),
    )


def perturb_weights(model: nn.Module, scale: float = 0.05) -> nn.Module:
    """Add Gaussian noise (from the global RNG) to every floating-point tensor of `model`'s state, keeping
    batch-norm variances positive: a stand-in for a trained model whose weights and statistics are not the
    initial ones. Returns the model in eval mode."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(scale * torch.randn_like(tensor))
                if name.endswith("running_var"):
                    tensor.abs_()
    return model.eval()


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 5,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> list[float]:
    """Train `model` with Adam; returns the mean loss of each epoch. Leaves the model in eval mode.

    `forward(model, x)` chooses what the loss sees (default `model(x)`; e.g. per-patch logits for PAL).
    """
    g = torch.Generator().manual_seed(seed)
    loss_fn = loss_fn or nn.functional.cross_entropy
    forward = forward or (lambda m, x: m(x))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=g)
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(forward(model, images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / count)
    model.eval()
    return history


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of an image classifier (eval mode is the caller's business)."""
    return float((model(images).argmax(1) == labels).float().mean())
