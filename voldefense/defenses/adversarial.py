"""Adversarial training of f against localized perturbations: the defense the paper says volumization avoids.

Each training batch, a fraction of the images is replaced by a perturbed copy:

- ``"patch"``: a square covering ``patch_area`` of the image at a uniformly random place, filled with uniform
  noise, and optionally optimised for ``pgd_steps`` signed-gradient steps against the current model (a cheap
  PGD patch attack, the strongest variant);
- ``"pixels"``: ``num_pixels`` random pixels set to random corners of the colour cube (the colours one-pixel
  attacks end up using);
- ``"both"``: each perturbed image draws one of the two.

All randomness comes from the training generator, so training is deterministic given the seed.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from voldefense.defenses.base import DefendedModel, ModelFactory, Timer, TrainBudget, Trainer, run_training
from voldefense.errors import ConfigError

Perturbation = Literal["patch", "pixels", "both"]


def random_square_masks(
    batch: int, side: int, image_size: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """``(B, 1, H, W)`` float masks, each a ``side × side`` square at a uniformly random place."""
    h, w = image_size
    top = torch.randint(0, h - side + 1, (batch,), generator=generator)
    left = torch.randint(0, w - side + 1, (batch,), generator=generator)
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None].float()


def random_pixel_masks(
    batch: int, num_pixels: int, image_size: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """``(B, 1, H, W)`` float masks with `num_pixels` distinct random pixels set per image."""
    h, w = image_size
    order = torch.rand(batch, h * w, generator=generator).argsort(dim=1)[:, :num_pixels]
    mask = torch.zeros(batch, h * w)
    mask.scatter_(1, order, 1.0)
    return mask.reshape(batch, 1, h, w)


class AdversarialTrainingDefense:
    """f trained on patch- and/or pixel-perturbed images with f's budget. Attack view ``"standard"``: plain
    autograd (the defense is the weights, there is nothing to approximate).

    Options: ``perturbation``: what perturbed training images get; ``patch_area``: patch size as a fraction of
    the image; ``num_pixels``: pixels changed; ``fraction``: share of each batch perturbed; ``pgd_steps`` /
    ``pgd_step_size``: signed gradient steps optimising the patch (0 = random noise patch).
    """

    name = "adversarial_training"

    def __init__(
        self,
        perturbation: Perturbation = "both",
        patch_area: float = 0.05,
        num_pixels: int = 10,
        fraction: float = 0.5,
        pgd_steps: int = 0,
        pgd_step_size: float = 0.1,
    ):
        if perturbation not in ("patch", "pixels", "both"):
            raise ConfigError(f"perturbation must be 'patch', 'pixels' or 'both', not {perturbation!r}")
        if not 0.0 < patch_area <= 1.0:
            raise ConfigError(f"patch_area must be a fraction of the image in (0, 1], not {patch_area!r}")
        if not isinstance(num_pixels, int) or isinstance(num_pixels, bool) or num_pixels < 1:
            raise ConfigError(f"num_pixels must be a positive integer, not {num_pixels!r}")
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"fraction of perturbed images must be in (0, 1], not {fraction!r}")
        if not isinstance(pgd_steps, int) or pgd_steps < 0:
            raise ConfigError(f"pgd_steps must be a non-negative integer, not {pgd_steps!r}")
        if not pgd_step_size > 0:
            raise ConfigError(f"pgd_step_size must be positive, not {pgd_step_size!r}")
        self.perturbation: Perturbation = perturbation
        self.patch_area = patch_area
        self.num_pixels = num_pixels
        self.fraction = fraction
        self.pgd_steps = pgd_steps
        self.pgd_step_size = pgd_step_size

    def _patch_side(self, h: int, w: int) -> int:
        return max(1, min(h, w, math.ceil(math.sqrt(self.patch_area * h * w) - 1e-9)))

    def perturb(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The training inputs for one batch (a `voldefense.defenses.base.BatchTransform`)."""
        b, c, h, w = images.shape
        device = images.device
        chosen = torch.rand(b, generator=generator) < self.fraction
        use_patch = {
            "patch": torch.ones(b, dtype=torch.bool),
            "pixels": torch.zeros(b, dtype=torch.bool),
            "both": torch.rand(b, generator=generator) < 0.5,
        }[self.perturbation]
        patch_mask = random_square_masks(b, self._patch_side(h, w), (h, w), generator)
        pixel_mask = random_pixel_masks(b, min(self.num_pixels, h * w), (h, w), generator)
        noise = torch.rand(b, c, h, w, generator=generator)
        corners = torch.randint(0, 2, (b, c, h, w), generator=generator).float()
        patch_rows = (chosen & use_patch).float()[:, None, None, None]
        pixel_rows = (chosen & ~use_patch).float()[:, None, None, None]
        patch_mask = (patch_mask * patch_rows).to(device)
        pixel_mask = (pixel_mask * pixel_rows).to(device)
        content = noise.to(device)
        if self.pgd_steps and bool(patch_mask.any()):
            content = self._pgd_patch(model, images, labels, patch_mask, content)
        out = images * (1 - patch_mask) + content * patch_mask
        return out * (1 - pixel_mask) + corners.to(device) * pixel_mask

    def _pgd_patch(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        mask: torch.Tensor,
        content: torch.Tensor,
    ) -> torch.Tensor:
        was_training = model.training
        model.eval()  # batch-norm statistics must not see the attack's intermediate images
        try:
            content = content.clone()
            for _ in range(self.pgd_steps):
                content.requires_grad_(True)
                loss = nn.functional.cross_entropy(model(images * (1 - mask) + content * mask), labels)
                (grad,) = torch.autograd.grad(loss, content)
                content = (content.detach() + self.pgd_step_size * grad.sign()).clamp(0, 1)
        finally:
            model.train(was_training)
        return content.detach()

    def fit(
        self,
        make_model: ModelFactory,
        images: torch.Tensor,
        labels: torch.Tensor,
        budget: TrainBudget,
        *,
        base_model: nn.Module | None = None,  # noqa: ARG002 - adversarial training starts from scratch
        trainer: Trainer | None = None,
    ) -> DefendedModel:
        model = make_model(images.shape[1])
        with Timer() as timer:
            run_training(model, images, labels, budget, transform=self.perturb, trainer=trainer)
        model.to(budget.device).eval()
        return DefendedModel(
            name=f"adversarial_training({self.perturbation})",
            model=model,
            views={"standard": model},
            train_seconds=timer.seconds,
            info={
                "perturbation": self.perturbation,
                "patch_area": self.patch_area,
                "num_pixels": self.num_pixels,
                "fraction": self.fraction,
                "pgd_steps": self.pgd_steps,
            },
        )
