"""Adaptive patch attacks on the volumizer's ranking itself (the `patch_rank` plugin).

The volumizer cuts an image into a grid of patches, ranks them by an information metric and stacks them into a
volume; the 3D backbone then mixes neighbouring depth slices. An adaptive attacker who knows this targets the
mechanism first, in two ways implemented here:

- **placement** (`"straddle"`): put the adversarial square across patch borders (centred on a grid line or
  corner) so that it touches as many volume patches as its side allows, instead of living inside one slice;
- **rank steering** (`"rank_penalty"`): while optimising the square's pixels for misclassification, also push
  the metric score of the patch that contains it toward a chosen rank, so the attacker decides *where in the
  volume* its pixels land (first slice, last slice, ...).

The ranking is computed on detached, quantised scores (histogram metrics such as MI are piecewise constant in
the pixels), so it has no useful gradient. Steering therefore uses a differentiable *surrogate* of the metric
(BPDA in the sense of Athalye et al. 2018: exact metric for the forward decision, smooth approximation for the
backward pass): the surrogate the metric's spec declares (`MetricSpec.surrogate`; the built-in histogram metrics
declare soft-binned versions), else the metric itself when it is already differentiable (mse, psnr, max_norm,
...). The achieved rank is always measured with the volumizer's exact ranking.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from voldefense.attacks.pgd import _check_eot, _check_targeting, _GradientAttack
from voldefense.attacks.rank_surrogate import (  # noqa: F401 - re-exported: the attack's public helpers
    MetricSurrogate,
    _reference_guard,
    exact_ranks,
    find_volumizer,
    rank_penalty,
)
from voldefense.attacks.regions import box_mask, patch_sides, random_locations
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)

Strategy = Literal["straddle", "rank_penalty", "search"]
STRATEGIES: tuple[str, ...] = ("straddle", "rank_penalty", "search")
RankTarget = Literal["first", "last"] | int

# -- placements --------------------------------------------------------------------------------------------


def touched_span(start: int, side: int, patch: int) -> int:
    """Grid cells along one axis that the interval [start, start + side) overlaps."""
    return (start + side - 1) // patch - start // patch + 1


def straddle_starts(length: int, side: int, patch: int) -> list[int]:
    """Start positions along one axis that touch the most grid cells, and among those the ones whose centre is
    nearest an interior grid line (so the square is split as evenly as possible across the border)."""
    starts = list(range(0, length - side + 1))
    best = max(touched_span(t, side, patch) for t in starts)
    starts = [t for t in starts if touched_span(t, side, patch) == best]
    lines = [k * patch for k in range(1, -(-length // patch))]
    if not lines:
        return starts

    def distance(t: int) -> float:
        return min(abs(t + side / 2 - line) for line in lines)

    nearest = min(distance(t) for t in starts)
    return [t for t in starts if distance(t) == nearest]


def aligned_starts(length: int, side: int, patch: int) -> list[int]:
    """Start positions along one axis that keep the interval inside one grid cell (or, when it is longer than
    a cell, start it on a grid line so it covers whole cells)."""
    if side <= patch:
        return [t for t in range(0, length - side + 1) if touched_span(t, side, patch) == 1]
    on_lines = [t for t in range(0, length - side + 1, patch)]
    return on_lines or [length - side]


def _pick(options: Sequence[int], generator: torch.Generator) -> int:
    return int(options[int(torch.randint(0, len(options), (1,), generator=generator))])


def main_patch(location: Sequence[int], sides: tuple[int, int], patch: tuple[int, int], cols: int) -> int:
    """Row-major index of the grid cell with the largest overlap with the box (first one on ties)."""
    (r, c), (sh, sw), (ph, pw) = location, sides, patch
    best, index = -1, 0
    for i in range(r // ph, (r + sh - 1) // ph + 1):
        for j in range(c // pw, (c + sw - 1) // pw + 1):
            overlap = (min(r + sh, (i + 1) * ph) - max(r, i * ph)) * (min(c + sw, (j + 1) * pw) - max(c, j * pw))
            if overlap > best:
                best, index = overlap, i * cols + j
    return index


# -- the attack ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    placement: str  # "straddle" | "aligned" | "random"
    target: int | str | None  # rank target (None: no steering)


def _resolve_target(target: int | str, n: int) -> int:
    if target == "first":
        return 0
    if target == "last":
        return n - 1
    t = int(target)
    if not -n <= t < n:
        raise ConfigError(f"rank_target {target} is out of range for a volume of {n} patches (use -{n}..{n - 1})")
    return t % n


def _check_target(target: object) -> int | str:
    if target in ("first", "last"):
        return str(target)
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    raise ConfigError(f"rank_target must be 'first', 'last' or a depth index (int), got {target!r}")


class RankSteeringPatch(_GradientAttack):
    """Adaptive white-box patch attack that also attacks the volumizer's ranking; size = area fraction.

    Strategies:

    - ``"straddle"``: the square straddles patch borders (centred on a grid line / corner, touching the most
      volume patches its side allows), then PGD through the whole pipeline.
    - ``"rank_penalty"``: the square sits inside one grid patch; PGD ascends the classification loss and,
      while the patch's rank differs from `rank_target`, also descends a hinge penalty on the patch's
      (surrogate) metric score that pushes it to that depth. Falls back to ``"straddle"`` when the model has
      no metric-ranking volumizer or its metric has no differentiable surrogate (`extra["fallback"]` says
      why).
    - ``"search"``: per image, `search_steps` PGD steps from each of: a random square, a straddling square,
      an aligned square without steering, and the aligned square steered to each of `targets`; the candidate
      with the highest loss (or the first success) continues for `steps` steps.

    Each step is a signed-gradient ascent step of `step_size` on the loss followed, while the exact rank is
    off target, by up to `rank_iters` model-free descent steps of `rank_step` along ``g_pen / max|g_pen|``
    (normalised, not signed: the surrogate's gradient is local in the intensity bins and sign steps overshoot
    them). Steered squares start from the clean pixels whatever `init` says: on uniform noise the soft
    histogram is flat and the surrogate gives no useful direction. For distance metrics with the ``"auto"``
    reference the penalty also keeps the patch's exact entropy above the lowest of the other patches (unless
    the target is the depth the reference itself takes): otherwise the cheapest way to change its score is to
    become the reference, which re-scores every patch. The loss and the rank compete: with a loss step much
    larger than `rank_step` the loss wins (the patch saturates and usually becomes the reference); the
    achieved rank is always reported. Everything is restricted to the square and clipped to [0, 1]; pixels
    outside the square never change. Stops per image at the first misclassification (success of the target
    class when targeted). One query per image per forward pass of the model (the surrogate costs none).
    """

    def __init__(
        self,
        *,
        strategy: Strategy = "search",
        steps: int = 40,
        step_size: float = 0.1,
        rank_target: RankTarget = "first",
        rank_step: float = 0.01,
        rank_iters: int = 5,
        margin: float = 0.05,
        targets: Sequence[RankTarget] = ("first", "last"),
        search_steps: int = 5,
        init: Literal["random", "clean"] = "random",
        targeted: bool = False,
        target_class: int | None = None,
        batch_size: int = 64,
        eot_samples: int = 1,
    ) -> None:
        self.eot_samples = _check_eot(eot_samples)
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if isinstance(steps, bool) or int(steps) < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}")
        if not float(step_size) > 0:
            raise ConfigError(f"step_size must be positive, got {step_size}")
        if not float(rank_step) >= 0 or not float(margin) >= 0:
            raise ConfigError(f"rank_step and margin must be >= 0, got {rank_step} and {margin}")
        if int(search_steps) < 1 or int(batch_size) < 1 or int(rank_iters) < 1:
            raise ConfigError("search_steps, rank_iters and batch_size must be at least 1")
        if init not in ("random", "clean"):
            raise ConfigError(f"init must be 'random' or 'clean', not {init!r}")
        if isinstance(targets, str) or not targets:
            raise ConfigError(f"targets must be a non-empty list of rank targets, got {targets!r}")
        _check_targeting(targeted, target_class)
        self.strategy = strategy
        self.steps = int(steps)
        self.step_size = float(step_size)
        self.rank_target = _check_target(rank_target)
        self.rank_step = float(rank_step)
        self.rank_iters = int(rank_iters)
        self.margin = float(margin)
        self.targets = tuple(_check_target(t) for t in targets)
        self.search_steps = int(search_steps)
        self.init = init
        self.targeted = bool(targeted)
        self.target_class = None if target_class is None else int(target_class)
        self.batch_size = int(batch_size)

    # -- planning -------------------------------------------------------------------------------------------

    def _plans(self, steerable: bool) -> list[_Plan]:
        if self.strategy == "straddle" or (not steerable and self.strategy == "rank_penalty"):
            return [_Plan("straddle", None)]
        if self.strategy == "rank_penalty":
            return [_Plan("aligned", self.rank_target)]
        # A random placement too, so the search covers what plain patch PGD does.
        plans = [_Plan("random", None), _Plan("straddle", None), _Plan("aligned", None)]
        if steerable:
            plans += [_Plan("aligned", t) for t in self.targets]
        return plans

    def _locations(
        self,
        placement: str,
        n: int,
        sides: tuple[int, int],
        size: tuple[int, int],
        patch: tuple[int, int] | None,
        generator: torch.Generator,
    ) -> torch.Tensor:
        (sh, sw), (h, w) = sides, size
        if patch is None or placement == "random":
            return random_locations(n, sh, sw, h, w, generator)
        chooser = straddle_starts if placement == "straddle" else aligned_starts
        rows, cols = chooser(h, sh, patch[0]), chooser(w, sw, patch[1])
        return torch.tensor([[_pick(rows, generator), _pick(cols, generator)] for _ in range(n)], dtype=torch.long)

    # -- PGD ------------------------------------------------------------------------------------------------

    def _steering(self, targets, mains, surrogate):
        """The `adjust` step of `_GradientAttack._pgd` that steers the rank: for the active images whose
        `targets` >= 0, several model-free penalty steps per loss step, close to a projection back onto the
        images whose patch sits at the target rank (the loss step alone tends to saturate the patch)."""
        if surrogate is None or self.rank_step <= 0:
            return None

        def steer(stepped, active, m):
            wanted = targets[active] >= 0
            if not bool(wanted.any()):
                return stepped
            for _ in range(self.rank_iters):
                descent = self._penalty_direction(stepped, targets[active], mains[active], wanted, m, surrogate)
                if not bool(descent.any()):
                    break
                stepped = (stepped + self.rank_step * descent).clamp(0, 1)
            return stepped

        return steer

    def _penalty_direction(self, xa, targets, mains, steer, m, surrogate):
        """Descent direction of the rank penalty (normalised per image), zero where the rank is on target."""
        vol = surrogate.volumizer
        sel = steer.nonzero().flatten()
        xs = xa[sel.to(xa.device)].detach()
        with torch.enable_grad():
            xg = xs.clone().requires_grad_(True)
            patches = vol.patches(xg)
            reference = surrogate.reference(patches)
            b, n_patches = patches.shape[:2]
            rows = torch.arange(b, device=xs.device)
            main = mains[sel].to(xs.device)
            with torch.no_grad():
                keys = surrogate.keys(patches.detach(), reference)
            # Only the main patch's key is differentiated: the other patches do not contain attacker pixels.
            keys = keys.clone()
            keys[rows, main] = surrogate.keys(patches[rows, main].unsqueeze(1), reference).squeeze(1)
            all_ranks = exact_ranks(vol, xs)
            exact = all_ranks[torch.arange(b), main.cpu()]
            off = exact != targets[sel]
            penalty = rank_penalty(keys, main, targets[sel].to(xs.device), self.margin)
            if surrogate.spec.distance and isinstance(surrogate.volumizer.reference, str):
                from voldefense.ranking import lowest_entropy_index

                # Becoming the reference is a legitimate way to reach the depth the reference takes (e.g. last
                # for ascending MI); elsewhere the guard keeps the patch from taking that role.
                ref_index = lowest_entropy_index(patches.detach(), vol.metric_options).cpu()
                guard = all_ranks[torch.arange(b), ref_index] != targets[sel]
                penalty = penalty + _reference_guard(patches, main, surrogate) * guard.to(penalty)
            penalty = penalty * off.to(penalty.device, penalty.dtype)
            (grad,) = torch.autograd.grad(penalty.sum(), xg)
        out = torch.zeros_like(xa)
        g = -grad * m[sel.to(xa.device)]
        out[sel.to(xa.device)] = g / g.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        return out

    # -- one batch ------------------------------------------------------------------------------------------

    def _attack_batch(self, model, images, labels, size, generator, context):
        volumizer, surrogate = context
        n, c, h, w = images.shape
        sides = patch_sides(size, h, w)
        goal = self._goal(labels)
        patch = tuple(volumizer.patch_size) if volumizer is not None else None
        grid_cols = volumizer.grid((h, w))[1] if volumizer is not None else 1
        n_patches = volumizer.num_patches((h, w)) if volumizer is not None else 1
        steerable = surrogate is not None and surrogate.available
        plans = self._plans(steerable)
        if patch is None:
            plans = [_Plan("random", None)]
        # Aligned plans share one location per image, so they differ only in the rank they steer to.
        cache: dict[str, torch.Tensor] = {}
        locations = []
        for plan in plans:
            if plan.placement not in cache:
                cache[plan.placement] = self._locations(plan.placement, n, sides, (h, w), patch, generator)
            locations.append(cache[plan.placement])
        noise = torch.rand((len(plans), n, c, h, w), generator=generator).to(images.device, images.dtype)
        starts = noise if self.init == "random" else images.unsqueeze(0).expand_as(noise).clone()
        for k, plan in enumerate(plans):
            if plan.target is not None:
                starts[k] = images  # see the class doc: steering needs a non-flat histogram to start from
        masks = [box_mask(loc, *sides, h, w).to(images.device, images.dtype) for loc in locations]
        mains = [
            torch.tensor([main_patch(loc, sides, patch, grid_cols) for loc in locs.tolist()], dtype=torch.long)
            if patch is not None
            else torch.zeros(n, dtype=torch.long)
            for locs in locations
        ]
        target_ranks = [
            torch.full((n,), -1 if plan.target is None else _resolve_target(plan.target, n_patches)) for plan in plans
        ]
        queries = torch.zeros(n, dtype=torch.long)
        active_surrogate = surrogate if steerable else None
        iterates = [images * (1 - mk) + st * mk for mk, st in zip(masks, starts, strict=True)]
        chosen = torch.zeros(n, dtype=torch.long)
        if len(plans) > 1:
            scores = torch.empty(len(plans), n)
            for k in range(len(plans)):
                adv, won, objective, q, last = self._pgd(
                    model,
                    images,
                    goal,
                    masks[k],
                    iterates[k],
                    self.search_steps,
                    self._steering(target_ranks[k], mains[k], active_surrogate),
                )
                queries += q
                # A success is kept as is (its first successful iterate); else continue from the last one.
                iterates[k] = torch.where(won.view(-1, 1, 1, 1).to(images.device), adv, last)
                scores[k] = torch.where(won, torch.full_like(objective, float("inf")), objective)
            chosen = scores.argmax(0)
        pick = (chosen, torch.arange(n))
        stack = torch.stack(iterates)[pick[0].to(images.device), pick[1].to(images.device)]
        mask = torch.stack(masks)[pick[0].to(images.device), pick[1].to(images.device)]
        target = torch.stack(target_ranks)[pick]
        main = torch.stack(mains)[pick]
        location = torch.stack(locations)[pick]
        adversarial, _, _, q, _ = self._pgd(
            model, images, goal, mask, stack, self.steps, self._steering(target, main, active_surrogate)
        )
        queries += q
        extra: dict[str, list] = {
            "placement": [plans[int(k)].placement for k in chosen],
            "rank_target": [None if int(t) < 0 else int(t) for t in target],
            "locations": location.tolist(),
            "patch_size": [list(sides)] * n,
        }
        if volumizer is not None:
            rows_touched = [touched_span(int(r), sides[0], patch[0]) for r in location[:, 0]]
            cols_touched = [touched_span(int(c_), sides[1], patch[1]) for c_ in location[:, 1]]
            before = exact_ranks(volumizer, images)[torch.arange(n), main]
            after = exact_ranks(volumizer, adversarial)[torch.arange(n), main]
            extra["main_patch"] = main.tolist()
            extra["patches_touched"] = [a * b for a, b in zip(rows_touched, cols_touched, strict=True)]
            extra["clean_rank"] = before.tolist()
            extra["achieved_rank"] = after.tolist()
        iterations = self.steps + (self.search_steps if len(plans) > 1 else 0)
        return adversarial, queries, iterations, extra

    def _prepare(self, model: nn.Module) -> tuple[Any, dict[str, Any]]:
        """The model's volumizer and the surrogate of its ranking metric, found once per run."""
        volumizer = find_volumizer(model)
        surrogate = MetricSurrogate(volumizer) if self.strategy != "straddle" else None
        extra: dict[str, Any] = {"strategy": self.strategy}
        if volumizer is None:
            extra["fallback"] = "no Volumizer inside the model: random square locations, no steering"
            logger.info("patch_rank: %s", extra["fallback"])
        elif surrogate is not None:
            extra["surrogate"] = surrogate.kind
            if not surrogate.available:
                extra["fallback"] = f"no rank steering ({surrogate.reason}): straddling placements only"
                logger.info("patch_rank: %s", extra["fallback"])
        return (volumizer, surrogate), extra
