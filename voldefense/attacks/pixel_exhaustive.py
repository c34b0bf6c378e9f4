"""`pixel_exhaustive`: every one-pixel change to a corner of the colour cube, tried on every image.

For an image of H x W pixels and C channels there are H * W * 2**C candidates (32 * 32 * 8 = 8,192 for CIFAR).
Trying them all gives the *exact* robust accuracy against one-pixel attacks whose colour is a cube corner — no
search over that set can do better — which makes it the ground truth that sampled one-pixel attacks
(`pixel_batched`, ART's PixelAttack) and the paper's one-pixel claim are checked against.

Candidates are enumerated location-major (every colour at pixel (0, 0), then pixel (0, 1), ...), streamed in
chunks through the model for all images at once, and an image stops at the end of the first chunk that holds a
misclassified candidate when `early_exit` is on. Queries count every candidate the model actually saw.
See docs/pixel_attacks.md.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from voldefense.attacks._pixel_search import (
    QueryModel,
    check_batch,
    colour_corners,
    int_option,
    model_device,
    paint_corner_candidates,
    pixel_count,
)
from voldefense.attacks.base import AttackResult, preserve_mode
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)

CIFAR_PIXELS = 32 * 32


class PixelExhaustiveAttack:
    """Exhaustive one-pixel attack over the colour-cube corners; the options are `__init__`'s."""

    def __init__(self, batch_size: int | None = None, early_exit: bool = True, max_pixels: int = CIFAR_PIXELS):
        """
        batch_size: candidate images per model call; None picks 256 on CPU and 8192 on CUDA.
        early_exit: stop an image once a misclassified candidate is found (its queries stop counting there);
            False evaluates all candidates and reports how many flip each image.
        max_pixels: refuse images with more pixels than this (default CIFAR's 1,024: a 224 x 224 image would
            need 401,408 queries per image); raise it deliberately for larger images.
        """
        what = "pixel_exhaustive"
        if batch_size is not None:
            int_option(what, "batch_size", batch_size, 1, "or null for automatic")
        if not isinstance(early_exit, bool):
            raise ConfigError(f"{what}: early_exit must be true or false, got {early_exit!r}")
        int_option(what, "max_pixels", max_pixels, 1)
        self.batch_size = batch_size
        self.early_exit = early_exit
        self.max_pixels = max_pixels

    def run(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: float, *, seed: int = 0
    ) -> AttackResult:
        """Try every candidate; `seed` is accepted for the common interface and unused (nothing is random)."""
        start_time = time.perf_counter()
        check_batch(images, labels, "pixel_exhaustive")
        b, c, h, w = images.shape
        if pixel_count(size, h, w, "pixel_exhaustive") != 1:
            raise ConfigError(
                f"pixel_exhaustive tries one-pixel changes only: size must be 1, got {size!r}; "
                "use pixel_batched for larger pixel budgets"
            )
        if h * w > self.max_pixels:
            raise ConfigError(
                f"pixel_exhaustive: images of {h}x{w} = {h * w} pixels exceed max_pixels={self.max_pixels} "
                f"({h * w * 2**c} queries per image); raise the max_pixels option to run it anyway"
            )
        device = model_device(model, images.device)
        x = images.detach().to(device=device, dtype=torch.float32)
        y = labels.to(device=device, dtype=torch.long)
        batch_size = self.batch_size or (8192 if device.type == "cuda" else 256)
        corners = colour_corners(c, device)
        per_pixel = corners.shape[0]
        total = h * w * per_pixel

        with preserve_mode(model), torch.no_grad():
            qm = QueryModel(model, y, batch_size)
            everyone = torch.arange(b, device=device)
            _, clean_pred = qm.evaluate(lambda s, e: x[s:e], everyone)
            already_wrong = clean_pred != y
            best_prob = torch.full((b,), torch.inf, device=device)
            best_cand = torch.full((b,), -1, dtype=torch.long, device=device)
            flips = torch.zeros(b, dtype=torch.long, device=device)

            active = (~already_wrong).nonzero()[:, 0]
            start, rounds = 0, 0
            while active.numel() and start < total:
                # Every active image advances by the same number of candidates per round, so a round is about
                # one batch_size of model inputs however many images are still searching.
                step = min(total - start, max(1, batch_size // active.numel()))
                cand = torch.arange(start, start + step, device=device)
                owners = active.repeat_interleave(step)
                flat_cand = cand.repeat(active.numel())

                def make(s: int, e: int, owners: torch.Tensor = owners, flat: torch.Tensor = flat_cand):
                    return paint_corner_candidates(x[owners[s:e]], flat[s:e], corners, w)

                prob, pred = qm.evaluate(make, owners)
                prob, wrong = prob.reshape(-1, step), (pred != y[owners]).reshape(-1, step)
                flips[active] += wrong.sum(dim=1)
                masked = torch.where(wrong, prob, torch.inf)
                round_best, round_arg = masked.min(dim=1)
                improve = round_best < best_prob[active]
                best_prob[active] = torch.where(improve, round_best, best_prob[active])
                best_cand[active] = torch.where(improve, cand[round_arg], best_cand[active])
                start += step
                rounds += 1
                if self.early_exit:
                    active = active[~wrong.any(dim=1)]

            success = best_cand >= 0
            adversarial = x.clone()
            if success.any():
                idx = success.nonzero()[:, 0]
                adversarial[idx] = paint_corner_candidates(x[idx], best_cand[idx], corners, w)

        logger.debug("pixel_exhaustive: %d of %d images flipped", int(success.sum()), b)
        extra = {
            "pixels": 1,
            "success": success.tolist(),
            "misclassified_clean": already_wrong.tolist(),
            "candidates_per_image": total,
            "early_exit": self.early_exit,
        }
        if not self.early_exit:
            extra["flipping_candidates"] = flips.tolist()
        return AttackResult(
            adversarial=adversarial.to(images.device, images.dtype),
            queries=qm.queries.to(images.device),
            iterations=rounds,
            seconds=time.perf_counter() - start_time,
            extra=extra,
        )

