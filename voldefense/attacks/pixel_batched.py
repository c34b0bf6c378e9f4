"""`pixel_batched`: ART's kind of N-pixel differential-evolution search, batched over many images.

The search is the one of Su et al. (2019, "One pixel attack for fooling deep neural networks") that ART's
PixelAttack implements: untargeted; a candidate is N (row, column, colour) triples; a population per image
evolves by DE/rand/1 (mutant = a + F (b - c) from three other members, no crossover), mutants are clipped to
the valid ranges, and a mutant replaces its parent when it lowers the fitness, the true-class probability.

What differs from ART is the execution: the populations of all images go through the model together in large
chunks on the model's device, every step of the search is a tensor operation (no per-candidate Python loop),
each image has a fixed query budget, and an image leaves the batch as soon as one of its candidates is
misclassified. Randomness is counter-based (`voldefense.attacks._pixel_search.uniform`), so an image's result
depends only on the seed and its own index, not on batch composition, chunk size or device.
See docs/pixel_attacks.md.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import torch
from torch import nn

from voldefense.attacks._pixel_search import (
    QueryModel,
    check_batch,
    choice_option,
    int_option,
    model_device,
    number_option,
    paint_pixels,
    pixel_count,
    uniform,
)
from voldefense.attacks.base import AttackResult, preserve_mode

logger = logging.getLogger(__name__)

ColourMode = Literal["continuous", "corners"]
Strategy = Literal["rand1", "best1"]

# Random streams: one per kind of draw, so adding a draw never shifts the others.
_INIT, _INIT_CORNER, _PICK = 0, 1, 2


class PixelBatchedAttack:
    """Batched differential-evolution N-pixel attack; the `pixel_batched` options are `__init__`'s."""

    def __init__(
        self,
        population: int = 400,
        max_queries: int = 40_000,
        batch_size: int | None = None,
        colour: ColourMode = "continuous",
        corner_init: float = 0.5,
        mutation: float = 0.5,
        strategy: Strategy = "rand1",
    ):
        """
        population: candidates per image (ART's PixelAttack uses about 400).
        max_queries: model evaluations per image, the clean check included (ART's default max_iter=100 spends
            about 40,500).
        batch_size: candidate images per model call; None picks 256 on CPU (cache-friendly) and 8192 on CUDA.
        colour: "continuous" searches colours in [0, 1]^C; "corners" rounds each channel to 0 or 1.
        corner_init: share of the initial population seeded with random colour-cube corners (saturated colours
            are the strongest one-pixel perturbations on most models); 0 gives ART's uniform initialisation.
        mutation: the DE scale factor F (Su et al. use 0.5).
        strategy: "rand1" (Su et al.) or "best1" (mutate around the image's best member, scipy's default).
        """
        what = "pixel_batched"
        int_option(what, "population", population, 4, "DE/rand/1 needs three other members")
        int_option(what, "max_queries", max_queries, population + 1, "clean check + initial population")
        if batch_size is not None:
            int_option(what, "batch_size", batch_size, 1, "or null for automatic")
        choice_option(what, "colour", colour, ("continuous", "corners"))
        choice_option(what, "strategy", strategy, ("rand1", "best1"))
        number_option(what, "corner_init", corner_init, 0.0, 1.0)
        number_option(what, "mutation", mutation, 1e-6, 2.0)
        self.population = population
        self.max_queries = max_queries
        self.batch_size = batch_size
        self.colour = colour
        self.corner_init = float(corner_init)
        self.mutation = float(mutation)
        self.strategy = strategy

    # -- encoding ------------------------------------------------------------------------------------------
    # A candidate is a (N, 2 + C) tensor in [0, 1]: normalised row, normalised column, the colour channels.

    def _decode(self, params: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
        rows = (params[..., 0] * height).long().clamp_(0, height - 1)
        cols = (params[..., 1] * width).long().clamp_(0, width - 1)
        colours = params[..., 2:]
        if self.colour == "corners":
            colours = (colours >= 0.5).to(colours.dtype)
        return rows, cols, colours

    def _initial(self, seed: int, ids: torch.Tensor, n: int, channels: int) -> torch.Tensor:
        pop = uniform(seed, ids, 0, _INIT, (self.population, n, 2 + channels))
        corner_members = round(self.corner_init * self.population)
        if corner_members:
            corners = uniform(seed, ids, 0, _INIT_CORNER, (corner_members, n, channels)) >= 0.5
            pop[:, :corner_members, :, 2:] = corners.to(pop.dtype)
        return pop

    def _others(self, seed: int, ids: torch.Tensor, generation: int) -> tuple[torch.Tensor, ...]:
        """Three member indices per member, distinct from each other and from the member itself (exactly
        uniform: offsets drawn from shrinking ranges and bumped past the ones already taken)."""
        p = self.population
        u = uniform(seed, ids, generation, _PICK, (p, 3))
        o1 = 1 + (u[..., 0] * (p - 1)).long()
        o2 = 1 + (u[..., 1] * (p - 2)).long()
        o2 = o2 + (o2 >= o1).long()
        o3 = 1 + (u[..., 2] * (p - 3)).long()
        low, high = torch.minimum(o1, o2), torch.maximum(o1, o2)
        o3 = o3 + (o3 >= low).long()
        o3 = o3 + (o3 >= high).long()
        member = torch.arange(p, device=ids.device)
        return tuple((member + o) % p for o in (o1, o2, o3))

    # -- the attack ----------------------------------------------------------------------------------------

    def run(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: float, *, seed: int = 0
    ) -> AttackResult:
        start_time = time.perf_counter()
        check_batch(images, labels, "pixel_batched")
        b, c, h, w = images.shape
        n = pixel_count(size, h, w, "pixel_batched")
        device = model_device(model, images.device)
        x = images.detach().to(device=device, dtype=torch.float32)
        y = labels.to(device=device, dtype=torch.long)
        batch_size = self.batch_size or (8192 if device.type == "cuda" else 256)
        p = self.population

        with preserve_mode(model), torch.no_grad():
            qm = QueryModel(model, y, batch_size)
            everyone = torch.arange(b, device=device)
            _, clean_pred = qm.evaluate(lambda s, e: x[s:e], everyone)
            success = clean_pred != y  # an image misclassified when clean needs no search
            already_wrong = success.clone()
            chosen = torch.zeros(b, n, 2 + c, device=device)  # the returned perturbation of each image
            has_choice = torch.zeros(b, dtype=torch.bool, device=device)

            active = (~success).nonzero()[:, 0]
            pop = self._initial(seed, active, n, c)
            fitness, found = self._evaluate(qm, x, active, pop, h, w)
            done = self._record(found, fitness, pop, active, success, chosen, has_choice)
            active, pop, fitness = active[~done], pop[~done], fitness[~done]
            spent, generation = 1 + p, 0

            while active.numel() and spent < self.max_queries:
                generation += 1
                # The last generation may be partial, so the budget is spent exactly.
                k = min(p, self.max_queries - spent)
                trials = self._mutants(seed, active, generation, pop, fitness)[:, :k]
                trial_fitness, found = self._evaluate(qm, x, active, trials, h, w)
                spent += k
                better = trial_fitness < fitness[:, :k]
                pop[:, :k] = torch.where(better[..., None, None], trials, pop[:, :k])
                fitness[:, :k] = torch.where(better, trial_fitness, fitness[:, :k])
                done = self._record(found, trial_fitness, trials, active, success, chosen, has_choice)
                active, pop, fitness = active[~done], pop[~done], fitness[~done]
                if generation % 10 == 0:
                    logger.debug("pixel_batched: generation %d, %d images searching", generation, len(active))

            # Images the search did not flip return their best candidate (lowest true-class probability): the
            # closest the search came, and exactly what an evaluation re-checks.
            if active.numel():
                best = fitness.argmin(dim=1)
                chosen[active] = pop[torch.arange(active.numel(), device=device), best]
                has_choice[active] = True

            adversarial = x.clone()
            if has_choice.any():
                idx = has_choice.nonzero()[:, 0]
                rows, cols, colours = self._decode(chosen[idx], h, w)
                adversarial[idx] = paint_pixels(x[idx], rows, cols, colours)

        seconds = time.perf_counter() - start_time
        return AttackResult(
            adversarial=adversarial.to(images.device, images.dtype),
            queries=qm.queries.to(images.device),
            iterations=generation,
            seconds=seconds,
            extra={
                "pixels": n,
                "success": (success & ~already_wrong).tolist(),
                "misclassified_clean": already_wrong.tolist(),
                "population": p,
                "max_queries": self.max_queries,
                "colour": self.colour,
            },
        )

    def _mutants(
        self, seed: int, active: torch.Tensor, generation: int, pop: torch.Tensor, fitness: torch.Tensor
    ) -> torch.Tensor:
        r1, r2, r3 = self._others(seed, active, generation)
        take = lambda r: pop.gather(1, r[:, :, None, None].expand_as(pop))  # noqa: E731 - local shorthand
        if self.strategy == "best1":
            base = pop[torch.arange(pop.shape[0], device=pop.device), fitness.argmin(dim=1)][:, None]
        else:
            base = take(r1)
        return (base + self.mutation * (take(r2) - take(r3))).clamp_(0.0, 1.0)

    def _evaluate(
        self, qm: QueryModel, x: torch.Tensor, active: torch.Tensor, cands: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fitness (true-class probability) and misclassification of every candidate, both (A, K)."""
        a, k = cands.shape[:2]
        flat = cands.reshape(a * k, *cands.shape[2:])
        owners = active.repeat_interleave(k)

        def make(start: int, stop: int) -> torch.Tensor:
            rows, cols, colours = self._decode(flat[start:stop], h, w)
            return paint_pixels(x[owners[start:stop]], rows, cols, colours)

        prob, pred = qm.evaluate(make, owners)
        return prob.reshape(a, k), (pred != qm.labels[owners]).reshape(a, k)

    @staticmethod
    def _record(
        found: torch.Tensor,
        fitness: torch.Tensor,
        cands: torch.Tensor,
        active: torch.Tensor,
        success: torch.Tensor,
        chosen: torch.Tensor,
        has_choice: torch.Tensor,
    ) -> torch.Tensor:
        """Store, for each active image with a misclassified candidate, the one with the lowest true-class
        probability; return which active images are done."""
        done = found.any(dim=1)
        if done.any():
            rows = done.nonzero()[:, 0]
            best = torch.where(found[rows], fitness[rows], torch.inf).argmin(dim=1)
            chosen[active[rows]] = cands[rows, best]
            has_choice[active[rows]] = True
            success[active[rows]] = True
        return done
