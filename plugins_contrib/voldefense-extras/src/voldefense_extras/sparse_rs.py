"""Sparse-RS for N pixels (Croce, Andriushchenko, Singh, Flammarion & Hein, AAAI 2022, "Sparse-RS: a versatile
framework for query-efficient sparse black-box adversarial attacks"), the L0 threat model.

A score-based black-box attack: it keeps a set of ``size`` perturbed pixels per image, each set to a corner of
the colour cube ({0, 1}^C, where an L0 perturbation is strongest), and at every step proposes to move a
fraction of them to fresh random locations with fresh random colours, keeping the proposal when it lowers the
margin ``logit[label] - max_other_logit``. The fraction decays with a fixed schedule (large moves early,
single-pixel moves late). Images are processed as a batch, each stopping as soon as it is misclassified.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import Tensor, nn

from voldefense.attacks import AttackResult, preserve_mode
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)

# Sparse-RS's schedule for the fraction of pixels resampled: (upper end of the phase on a 10,000-query scale,
# divisor of p_init). Rescaled to any query budget, as in the reference implementation.
_SCHEDULE = ((0, 1), (50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10), (6000, 12), (8000, 15))


def resample_fraction(iteration: int, max_queries: int, p_init: float) -> float:
    """The fraction of the perturbed pixels Sparse-RS moves at `iteration` of a `max_queries` budget."""
    scaled = int(iteration / max_queries * 10000)
    divisor = 20
    for upper, div in _SCHEDULE:
        if scaled <= upper:
            divisor = div
            break
    return p_init / divisor


def margin(logits: Tensor, labels: Tensor) -> Tensor:
    """``logit[label] - max over the other classes``: negative exactly when the image is misclassified."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(1).values


def apply_pixels(images: Tensor, pixels: Tensor, colours: Tensor) -> Tensor:
    """Copy of `images` (B, C, H, W) with flat pixel indices `pixels` (B, k) set to `colours` (B, k, C)."""
    b, c, h, w = images.shape
    flat = images.reshape(b, c, h * w).clone()
    index = pixels[:, None, :].expand(b, c, pixels.shape[1])
    flat.scatter_(2, index, colours.transpose(1, 2).to(images.dtype))
    return flat.view(b, c, h, w)


class SparseRS:
    """Untargeted Sparse-RS over ``size`` pixels with a budget of ``max_queries`` forward passes per image.

    The budget counts every query: the clean prediction, the initial random perturbation and one per step.
    ``early_stop=False`` keeps lowering the margin after success (a more confident adversarial example) until
    the budget is spent. ``batch_size`` bounds how many images are attacked at once.
    """

    def __init__(
        self, *, max_queries: int = 1000, p_init: float = 0.3, batch_size: int = 256, early_stop: bool = True
    ) -> None:
        if not isinstance(max_queries, int) or max_queries < 2:
            raise ConfigError(f"sparse_rs: max_queries must be an integer >= 2, got {max_queries!r}")
        if not 0.0 < p_init <= 1.0:
            raise ConfigError(f"sparse_rs: p_init must be in (0, 1], got {p_init!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"sparse_rs: batch_size must be a positive integer, got {batch_size!r}")
        self.max_queries = max_queries
        self.p_init = float(p_init)
        self.batch_size = batch_size
        self.early_stop = bool(early_stop)

    def run(
        self, model: nn.Module, images: Tensor, labels: Tensor, size: float, *, seed: int = 0
    ) -> AttackResult:
        start = time.perf_counter()
        if images.dim() != 4:
            raise ValueError(f"sparse_rs expects images (B, C, H, W), got shape {tuple(images.shape)}")
        k = _pixel_count(size, images.shape[2] * images.shape[3])
        generator = torch.Generator().manual_seed(seed)
        adversarial = images.clone()
        queries = torch.zeros(images.shape[0], dtype=torch.long)
        successes = torch.zeros(images.shape[0], dtype=torch.bool)
        iterations = 0
        with preserve_mode(model), torch.no_grad():
            for lo in range(0, images.shape[0], self.batch_size):
                hi = min(lo + self.batch_size, images.shape[0])
                adv, q, ok, its = self._attack_batch(model, images[lo:hi], labels[lo:hi], k, generator)
                adversarial[lo:hi], queries[lo:hi], successes[lo:hi] = adv, q, ok
                iterations = max(iterations, its)
        n = max(images.shape[0], 1)
        logger.debug("sparse_rs: %d/%d images fooled with %d pixels", int(successes.sum()), n, k)
        return AttackResult(
            adversarial=adversarial,
            queries=queries.to(images.device),
            iterations=iterations,
            seconds=time.perf_counter() - start,
            extra={
                "pixels": k,
                "max_queries": self.max_queries,
                "success_rate": float(successes.sum()) / n,
                "successful": successes.tolist(),
            },
        )

    def _attack_batch(
        self, model: nn.Module, x: Tensor, y: Tensor, k: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        b, c, h, w = x.shape
        device = x.device
        queries = torch.ones(b, dtype=torch.long)
        best_margin = margin(model(x), y).cpu()
        # Images the model already gets wrong need no attack (and get no perturbation).
        running = best_margin > 0
        success = ~running
        adversarial = x.clone()
        if k == 0 or not bool(running.any()):
            return adversarial, queries, success, 0

        def draw_colours(shape: tuple[int, ...]) -> Tensor:
            return torch.randint(0, 2, (*shape, c), generator=generator).float()

        # Initial perturbation: k distinct random pixels per image (top-k of random scores), random corners.
        pixels = torch.rand(b, h * w, generator=generator).topk(k, dim=1).indices
        colours = draw_colours((b, k))
        todo = running.nonzero().squeeze(1)
        candidate = apply_pixels(x[todo.to(device)], pixels[todo].to(device), colours[todo].to(device))
        best_margin[todo] = margin(model(candidate), y[todo.to(device)]).cpu()
        queries[todo] += 1
        adversarial[todo.to(device)] = candidate
        success |= best_margin <= 0

        iterations = 0
        for iteration in range(1, self.max_queries - 1):
            active = running & ~success if self.early_stop else running
            if not bool(active.any()):
                break
            iterations = iteration
            todo = active.nonzero().squeeze(1)
            n_move = max(1, int(resample_fraction(iteration, self.max_queries, self.p_init) * k))
            n_move = min(n_move, k, h * w - k) if h * w > k else 0
            new_pixels, new_colours = pixels[todo].clone(), colours[todo].clone()
            if n_move > 0:
                # Which of the k perturbed pixels move, and where to: fresh locations not yet perturbed.
                moving = torch.rand(len(todo), k, generator=generator).argsort(1)[:, :n_move]
                scores = torch.rand(len(todo), h * w, generator=generator)
                scores.scatter_(1, new_pixels, -1.0)
                targets = scores.topk(n_move, dim=1).indices
                new_pixels.scatter_(1, moving, targets)
                fresh = draw_colours((len(todo), n_move))
                new_colours.scatter_(1, moving[:, :, None].expand(-1, -1, c), fresh)
            else:
                # Every pixel is perturbed already: only the colours can change.
                moving = torch.rand(len(todo), k, generator=generator).argsort(1)[:, :1]
                new_colours.scatter_(1, moving[:, :, None].expand(-1, -1, c), draw_colours((len(todo), 1)))
            todo_d = todo.to(device)
            candidate = apply_pixels(x[todo_d], new_pixels.to(device), new_colours.to(device))
            new_margin = margin(model(candidate), y[todo_d]).cpu()
            queries[todo] += 1
            better = new_margin < best_margin[todo]
            kept = todo[better]
            pixels[kept], colours[kept] = new_pixels[better], new_colours[better]
            best_margin[kept] = new_margin[better]
            adversarial[kept.to(device)] = candidate[better.to(device)]
            success |= best_margin <= 0
        return adversarial, queries, success, iterations


def _pixel_count(size: float, num_pixels: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not math.isfinite(size) or size < 0:
        raise ConfigError(f"sparse_rs: size is a number of pixels (a non-negative integer), got {size!r}")
    if float(size) != int(size):
        raise ConfigError(f"sparse_rs: size is a number of pixels and must be a whole number, got {size!r}")
    if int(size) > num_pixels:
        raise ConfigError(f"sparse_rs: size {int(size)} exceeds the {num_pixels} pixels of the image")
    return int(size)
