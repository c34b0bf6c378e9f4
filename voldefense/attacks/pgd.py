"""Adaptive white-box attacks that differentiate through the whole pipeline (the volumizer re-ranks on every
forward pass and gradients flow through its gather): PGD inside a patch region, and an N-pixel sparse PGD.

Both are untargeted by default (maximise cross-entropy of the true class) or targeted (minimise cross-entropy
of `target_class`), stop per image at the first success, and count one query per image per forward pass (a
gradient step costs one query: its forward pass).

Against a model with randomness (a random patch order, a stochastic defense) a single draw's gradient can point
anywhere (stochastic-gradient obfuscation, Athalye et al. 2018). `eot_samples` > 1 applies Expectation over
Transformation: each step averages the gradient over that many forward passes, each drawing the model's
randomness afresh, and judges success on the draws' mean probabilities; every pass counts as a query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from voldefense.attacks.base import AttackResult, preserve_mode
from voldefense.attacks.regions import (
    box_mask,
    check_inputs,
    generator_for,
    patch_sides,
    pixel_budget,
    random_locations,
)
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)


def _check_common(steps: int, step_size: float, batch_size: int, targeted: bool, target_class: int | None) -> None:
    if int(steps) < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    if not float(step_size) > 0:
        raise ConfigError(f"step_size must be positive, got {step_size}")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    _check_targeting(targeted, target_class)


def _check_eot(eot_samples: int) -> int:
    if isinstance(eot_samples, bool) or int(eot_samples) != eot_samples or int(eot_samples) < 1:
        raise ConfigError(f"eot_samples must be a whole number >= 1 (1 = no EOT), got {eot_samples}")
    return int(eot_samples)


def _mean_log_probability(draws: list[torch.Tensor]) -> torch.Tensor:
    """Log of the mean class probabilities over several draws' logits: the EOT view of a randomized model."""
    mean = torch.stack([F.softmax(logits.float(), dim=1) for logits in draws]).mean(0)
    return mean.clamp_min(1e-30).log()


def _check_targeting(targeted: bool, target_class: int | None) -> None:
    if targeted and target_class is None:
        raise ConfigError("a targeted attack needs target_class (a class index)")
    if target_class is not None and int(target_class) < 0:
        raise ConfigError(f"target_class must be a class index >= 0, got {target_class}")


class _AdversarialObjective:
    """The loss to ascend, its input gradient and the success test of an untargeted or targeted attack; shared
    with the other gradient attacks of this package (`voldefense.attacks.rank_steering`)."""

    targeted: bool
    target_class: int | None

    def _goal(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.full_like(labels, int(self.target_class)) if self.targeted else labels

    def _objective(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Per-image quantity to *maximise*; summed over images so each image gets its own gradient."""
        ce = F.cross_entropy(logits, goal, reduction="none")
        return -ce if self.targeted else ce

    def _success(self, logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred == goal if self.targeted else pred != goal

    eot_samples: int = 1  # forward passes averaged per step (EOT); 1 = a single draw

    def _gradient(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (detached) and the gradient of the summed objective with respect to `x`; under EOT the
        gradient is the mean over `eot_samples` draws and the logits are the log of the draws' mean
        probabilities."""
        x = x.detach().requires_grad_(True)
        if self.eot_samples == 1:
            logits = model(x)
            # autograd.grad instead of backward(): no parameter .grad is accumulated on the caller's model.
            (grad,) = torch.autograd.grad(self._objective(logits, goal).sum(), x)
            return logits.detach(), grad
        total = torch.zeros_like(x)
        draws = []
        for _ in range(self.eot_samples):
            logits = model(x)
            (grad,) = torch.autograd.grad(self._objective(logits, goal).sum(), x)
            total += grad
            draws.append(logits.detach())
        return _mean_log_probability(draws), total / self.eot_samples

    @torch.no_grad()
    def _classify(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits of a success check without a gradient: one pass, or the log mean probabilities over the EOT
        draws."""
        if self.eot_samples == 1:
            return model(x)
        return _mean_log_probability([model(x) for _ in range(self.eot_samples)])

    def _check_target_class(self, model: nn.Module, images: torch.Tensor) -> None:
        """A targeted attack's target_class must be one of the model's classes (costs one forward pass)."""
        if self.targeted and self.target_class is not None:
            with torch.no_grad(), preserve_mode(model):
                k = model(images[:1]).shape[-1]
            if int(self.target_class) >= k:
                raise ConfigError(f"target_class {self.target_class} is not a class of this {k}-class model")


class _GradientAttack(_AdversarialObjective):
    """Shared machinery of the gradient attacks (PatchPGD, SparsePGD, `rank_steering.RankSteeringPatch`):
    batching and bookkeeping around `_attack_batch`, and the PGD loop inside a region (`_pgd`)."""

    batch_size: int
    step_size: float

    def run(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: float, *, seed: int = 0
    ) -> AttackResult:
        check_inputs(images, labels)
        self._check_target_class(model, images)
        start = time.perf_counter()
        context, extra = self._prepare(model)
        generator = generator_for(seed)
        adversarial = images.clone()
        queries = torch.zeros(images.shape[0], dtype=torch.long)
        iterations = 0
        with preserve_mode(model):
            for lo in range(0, images.shape[0], self.batch_size):
                hi = min(lo + self.batch_size, images.shape[0])
                adv, q, it, ex = self._attack_batch(model, images[lo:hi], labels[lo:hi], size, generator, context)
                adversarial[lo:hi] = adv
                queries[lo:hi] = q
                iterations = max(iterations, it)
                for key, value in ex.items():
                    extra.setdefault(key, []).extend(value)
        return AttackResult(adversarial, queries, iterations, time.perf_counter() - start, extra)

    def _prepare(self, model: nn.Module) -> tuple[Any, dict[str, Any]]:
        """What the attack learns about `model` once per run: a context passed to every `_attack_batch`, and the
        run's first `extra` facts. None and nothing by default."""
        return None, {}

    def _attack_batch(self, model, images, labels, size, generator, context):  # pragma: no cover - abstract
        raise NotImplementedError

    def _pgd(
        self,
        model: nn.Module,
        images: torch.Tensor,
        goal: torch.Tensor,
        mask: torch.Tensor,
        start: torch.Tensor,
        steps: int,
        adjust: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Signed-gradient ascent inside `mask` (per image) from `start` for `steps` steps, stopping per image at
        the first success; pixels outside the mask keep their clean values.

        `adjust(stepped, active, mask)`, when given, moves the stepped iterates of the images `active` further
        (rank steering) before they are put back into the mask. Returns the adversarial images (first successful
        iterate, else the last evaluated one), success flags, the final objective, queries per image and the last
        iterate (to continue from)."""
        n = images.shape[0]
        x = images * (1 - mask) + start * mask
        best = x.clone()
        done = torch.zeros(n, dtype=torch.bool)
        objective = torch.full((n,), -float("inf"))
        queries = torch.zeros(n, dtype=torch.long)
        for step in range(steps + 1):
            active = (~done).nonzero().flatten()
            if active.numel() == 0:
                break
            idx = active.to(x.device)
            xa, ga = x[idx], goal[active.to(goal.device)]
            queries[active] += self.eot_samples
            if step == steps:  # last check only, no more updates
                logits = self._classify(model, xa)
                grad = None
            else:
                logits, grad = self._gradient(model, xa, ga)
            with torch.no_grad():
                objective[active] = self._objective(logits, ga).float().cpu()
                won = self._success(logits, ga).cpu()
                best[idx] = xa
                done[active[won]] = True
                if grad is None:
                    break
                m = mask[idx]
                stepped = (xa + self.step_size * grad.sign() * m).clamp(0, 1)
            if adjust is not None:
                stepped = adjust(stepped, active, m)
            with torch.no_grad():
                keep = (~won).to(x.device)
                x[idx[keep]] = (images[idx] * (1 - m) + stepped * m)[keep]
        return best, done, objective, queries, x


class PatchPGD(_GradientAttack):
    """PGD on the pixels of one rectangular patch region per image; size = area fraction of the image.

    `location="random"` draws the region uniformly; `"search"` tries `candidates` random regions with
    `search_steps` PGD steps each and continues from the one with the highest objective. The patch starts from
    uniform noise (`init="random"`) or the clean pixels (`init="clean"`), takes signed-gradient steps of
    `step_size` and is clipped to [0, 1]; pixels outside the region never change.
    """

    def __init__(
        self,
        *,
        steps: int = 40,
        step_size: float = 0.1,
        location: Literal["random", "search"] = "random",
        candidates: int = 4,
        search_steps: int = 5,
        init: Literal["random", "clean"] = "random",
        targeted: bool = False,
        target_class: int | None = None,
        batch_size: int = 64,
        eot_samples: int = 1,
    ) -> None:
        _check_common(steps, step_size, batch_size, targeted, target_class)
        self.eot_samples = _check_eot(eot_samples)
        if location not in ("random", "search"):
            raise ConfigError(f"location must be 'random' or 'search', not {location!r}")
        if init not in ("random", "clean"):
            raise ConfigError(f"init must be 'random' or 'clean', not {init!r}")
        if int(candidates) < 1 or int(search_steps) < 1:
            raise ConfigError("candidates and search_steps must be at least 1")
        self.steps = int(steps)
        self.step_size = float(step_size)
        self.location = location
        self.candidates = int(candidates)
        self.search_steps = int(search_steps)
        self.init = init
        self.targeted = bool(targeted)
        self.target_class = None if target_class is None else int(target_class)
        self.batch_size = int(batch_size)

    def _attack_batch(self, model, images, labels, size, generator, context=None):
        n, c, h, w = images.shape
        side_h, side_w = patch_sides(size, h, w)
        goal = self._goal(labels)
        n_candidates = self.candidates if self.location == "search" else 1
        locations = torch.stack([random_locations(n, side_h, side_w, h, w, generator) for _ in range(n_candidates)])
        noise = torch.rand((n_candidates, n, c, h, w), generator=generator).to(images.device, images.dtype)
        starts = noise if self.init == "random" else images.unsqueeze(0).expand_as(noise)
        queries = torch.zeros(n, dtype=torch.long)
        chosen = torch.zeros(n, dtype=torch.long)
        if n_candidates > 1:
            # Short PGD from each candidate region; keep the region where the objective got highest.
            scores = torch.empty(n_candidates, n)
            for k in range(n_candidates):
                mask = box_mask(locations[k], side_h, side_w, h, w).to(images.device, images.dtype)
                _, won, objective, q, _ = self._pgd(model, images, goal, mask, starts[k], self.search_steps)
                queries += q
                scores[k] = torch.where(won, torch.full_like(objective, float("inf")), objective)
            chosen = scores.argmax(0)
        picked = locations[chosen, torch.arange(n)]
        mask = box_mask(picked, side_h, side_w, h, w).to(images.device, images.dtype)
        start = starts[chosen.to(starts.device), torch.arange(n, device=starts.device)]
        adversarial, _, _, q, _ = self._pgd(model, images, goal, mask, start, self.steps)
        queries += q
        extra = {"locations": picked.tolist(), "patch_size": [[side_h, side_w]] * n}
        return adversarial, queries, self.steps, extra


class SparsePGD(_GradientAttack):
    """An N-pixel white-box attack: PGD with a projection onto images that differ from the clean one in at
    most N pixel locations (all channels of a pixel count as one); size = N.

    A dense iterate `z` takes gradient steps scaled so the pixel with the largest gradient moves by
    `step_size`, clipped to [0, 1]. The image evaluated at each step is the L0 projection of `z`: the clean
    image with the N locations where `z` departs most from it (squared distance summed over channels) copied
    from `z`. Taking the gradient at that projection with respect to *all* pixels lets unselected pixels
    accumulate evidence and enter the selection later (PGD0-style, Croce & Hein 2019). The budget is exact:
    every other pixel is bit-identical to the clean image.
    """

    def __init__(
        self,
        *,
        steps: int = 50,
        step_size: float = 1.0,
        restarts: int = 1,
        targeted: bool = False,
        target_class: int | None = None,
        batch_size: int = 64,
        eot_samples: int = 1,
    ) -> None:
        _check_common(steps, step_size, batch_size, targeted, target_class)
        self.eot_samples = _check_eot(eot_samples)
        if int(restarts) < 1:
            raise ConfigError(f"restarts must be at least 1, got {restarts}")
        self.steps = int(steps)
        self.step_size = float(step_size)
        self.restarts = int(restarts)
        self.targeted = bool(targeted)
        self.target_class = None if target_class is None else int(target_class)
        self.batch_size = int(batch_size)

    @staticmethod
    def project(z: torch.Tensor, clean: torch.Tensor, n_pixels: int) -> torch.Tensor:
        """The clean images with their `n_pixels` most-changed locations taken from `z` (exact L0
        projection)."""
        b, _, h, w = z.shape
        score = (z - clean).pow(2).sum(1).flatten(1)  # (B, H*W)
        keep = torch.zeros_like(score, dtype=torch.bool)
        keep.scatter_(1, score.topk(n_pixels, dim=1).indices, True)
        # Locations with no change at all need not be "kept": that keeps the count honest when z barely moved.
        keep &= score > 0
        keep = keep.view(b, 1, h, w)
        return torch.where(keep, z, clean)

    def _attack_batch(self, model, images, labels, size, generator, context=None):
        n, c, h, w = images.shape
        n_pixels = pixel_budget(size, h, w)
        goal = self._goal(labels)
        best = images.clone()
        done = torch.zeros(n, dtype=torch.bool)
        queries = torch.zeros(n, dtype=torch.long)
        for restart in range(self.restarts):
            active0 = (~done).nonzero().flatten()
            if active0.numel() == 0:
                break
            clean = images[active0.to(images.device)]
            z = clean.clone()
            if restart > 0:
                # Later restarts start from a random sparse perturbation, so they explore other locations.
                noise = torch.rand(clean.shape, generator=generator).to(clean.device, clean.dtype)
                z = self.project(noise, clean, n_pixels)
            finished = torch.zeros(active0.numel(), dtype=torch.bool)
            for step in range(self.steps + 1):
                act = (~finished).nonzero().flatten()
                if act.numel() == 0:
                    break
                actd = act.to(images.device)
                x = self.project(z[actd], clean[actd], n_pixels)
                ga = goal[active0[act].to(goal.device)]
                queries[active0[act]] += self.eot_samples
                if step == self.steps:
                    logits = self._classify(model, x)
                    grad = None
                else:
                    logits, grad = self._gradient(model, x, ga)
                with torch.no_grad():
                    won = self._success(logits, ga).cpu()
                    if won.any():
                        hit = act[won]
                        best[active0[hit].to(images.device)] = x[won.to(x.device)]
                        done[active0[hit]] = True
                        finished[hit] = True
                    if grad is None:
                        break
                    scale = grad.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                    z[actd] = (z[actd] + self.step_size * grad / scale).clamp(0, 1)
            # Images no restart fooled keep the last restart's projection (a genuine N-pixel image).
            lost = ~done[active0]
            if lost.any():
                idx = lost.nonzero().flatten().to(images.device)
                best[active0[lost].to(images.device)] = self.project(z[idx], clean[idx], n_pixels)
        return best, queries, self.steps, {}
