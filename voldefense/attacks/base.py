"""The one interface every attack plugin implements.

An attack is built by its spec's factory with its options (budgets, iterations, ...) and then run as
``attack.run(model, images, labels, size, seed=...)`` where ``model`` maps images ``(B, C, H, W)`` in [0, 1] to
image logits ``(B, K)`` — the whole defended pipeline or the undefended f — and ``size`` is a pixel count or an
area fraction (the spec's ``size_unit``). It returns an `AttackResult`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class AttackResult:
    """What an attack produced and what it spent.

    ``adversarial``: ``(B, C, H, W)``, or ``(R, B, C, H, W)`` when the attack makes R attacked copies of each
    image (the paper's random-pixel protocol makes five); always in [0, 1], on the images' device.
    ``queries``: ``(B,)`` model evaluations (forward passes of one image) spent on each image.
    ``iterations``: optimiser steps / generations run (the maximum over images).
    ``seconds``: wall-clock time of the whole call.
    ``extra``: attack-specific facts worth reporting (e.g. the patch location), JSON-serialisable.
    """

    adversarial: torch.Tensor
    queries: torch.Tensor
    iterations: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def copies(self) -> torch.Tensor:
        """The adversarial images as ``(R, B, C, H, W)`` (R = 1 for single-copy attacks)."""
        return self.adversarial.unsqueeze(0) if self.adversarial.dim() == 4 else self.adversarial

    @property
    def num_copies(self) -> int:
        return self.copies().shape[0]


@runtime_checkable
class Attack(Protocol):
    def run(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: float, *, seed: int = 0
    ) -> AttackResult: ...


@contextlib.contextmanager
def preserve_mode(model: nn.Module, *, train: bool = False) -> Iterator[nn.Module]:
    """Put `model` in eval (or train) mode for the attack and restore every submodule's mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.train(train)
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Image logits of `model` on `images`, in chunks so large inputs fit in memory."""
    outputs = [model(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(outputs) if outputs else images.new_zeros((0, 0))
