"""`pixel_search` / `pixel_search_grad`: query-efficient N-pixel attacks that search where it matters first.

ART's PixelAttack (differential evolution) spends ~40,000 model evaluations per CIFAR image and still misses
most one-pixel attacks that exist. This attack orders its candidates by how sensitive the model is to each
location, tries the strongest colours first (the corners of the colour cube, farthest corner first), and stops
each image at its first misclassified candidate. All images are searched together, in batches on the model's
device. Every candidate image the model sees is one query (a batch of k candidates is k queries).

1. **Sensitivity ranking of the pixels.**
   - `pixel_search` (black-box, gradient-free): a few batched *block probes* — each `probe_block` x
     `probe_block` block painted with its farthest corner colours, one query per block, ranks the blocks — and
     then a *pixel sweep*: the farthest corner at each pixel, most sensitive blocks first (a one-pixel finite
     difference per location, and already a one-pixel attack). Swept pixels are re-ranked by the margin they
     reached.
   - `pixel_search_grad` (white-box): one gradient of the margin at the clean image (counted as one query);
     the first-order margin change of every (pixel, corner) candidate ranks the pixels and their corners.
2. **N = 1: corner search.** The remaining corners of every pixel, most sensitive pixels first (at most
   H * W * 2**C candidates: with a large enough budget it is `pixel_exhaustive`, in a better order).
3. **N > 1: random search** in the style of Sparse-RS (Croce et al., AAAI 2022): start from the N most
   sensitive pixels at their best corners; each step proposes moving a few of them (a decaying share, Sparse-RS'
   schedule) to new locations drawn mostly from the `pool` most sensitive pixels, with a corner colour, and keeps
   a proposal that lowers the margin ``logit[label] - max other logit``.

Randomness is counter-based (`voldefense.attacks._pixel_search.uniform`): an image's search depends only on the
seed and its index, not on the other images, the batch size or the device. See docs/pixel_attacks.md.
"""

from __future__ import annotations

import bisect
import logging
import math
import time

import torch
from torch import nn

from voldefense.attacks._pixel_search import (
    check_batch,
    int_option,
    model_device,
    number_option,
    pixel_count,
    uniform,
)
from voldefense.attacks.base import AttackResult, preserve_mode
from voldefense.attacks.pixel_search_state import Ranking, SearchState

logger = logging.getLogger(__name__)

# Random streams, one per kind of draw, so adding a draw never shifts the others.
_WHICH, _WHERE, _COLOUR = 20, 21, 22

# Sparse-RS' schedule: a proposal moves p_init / divisor of the N pixels, the divisor growing with the share of
# the budget spent (progress on a 10,000-query scale, as in the reference implementation).
_PROGRESS = (0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_DIVISOR = (1, 2, 4, 5, 6, 8, 10, 12, 15, 20)
_P_INIT = 0.3


def moved_share(step: int, budget: int) -> float:
    """The share of the N pixels a random-search proposal moves at `step` of a `budget`-query search."""
    return _P_INIT / _DIVISOR[bisect.bisect_left(_PROGRESS, int(step / max(budget, 1) * 10000))]


class PixelSearch:
    """Black-box query-efficient N-pixel attack (`pixel_search`); the options are `__init__`'s."""

    white_box = False
    name = "pixel_search"

    def __init__(
        self,
        max_queries: int = 1000,
        probe_block: int = 4,
        sweep: float | None = None,
        pool: int = 64,
        focus: float = 0.5,
        proposals: int = 4,
        batch_size: int | None = None,
    ):
        """
        max_queries: model evaluations per image, the clean check and the probes included.
        probe_block: side of the square blocks probed to rank the pixel sweep (H/b * W/b queries; 0 = no probes,
            sweep in raster order).
        sweep: share of the pixels (most sensitive blocks first) whose farthest corner is tried one pixel at a
            time before the corner search (N = 1) or the random search (N > 1); None: all of them for N = 1,
            a quarter for N > 1 (where the random search makes better use of the queries). For N > 1 the sweep
            never takes more than half of the queries left after the probes.
        pool: the random search draws new locations mostly from this many most sensitive pixels.
        focus: probability that a new location comes from the pool (else uniform over the image).
        proposals: random-search proposals per image per step (each one query; the best is kept): fewer,
            larger model calls (4 halved the time per image on a loaded 2-core CPU at about the same queries).
        batch_size: candidate images per model call; None picks 256 on CPU and 8192 on CUDA.
        """
        self._check_common(max_queries, pool, focus, proposals, batch_size)
        int_option(self.name, "probe_block", probe_block, 0, "0 turns the block probes off")
        if sweep is not None:
            number_option(self.name, "sweep", sweep, 0.0, 1.0)
        self.probe_block, self.sweep = probe_block, sweep

    def _check_common(self, max_queries: int, pool: int, focus: float, proposals: int, batch_size: int | None):
        int_option(self.name, "max_queries", max_queries, 2, "the clean check and at least one candidate")
        int_option(self.name, "pool", pool, 1)
        number_option(self.name, "focus", focus, 0.0, 1.0)
        int_option(self.name, "proposals", proposals, 1)
        if batch_size is not None:
            int_option(self.name, "batch_size", batch_size, 1, "or null for automatic")
        self.max_queries, self.pool, self.focus = max_queries, pool, float(focus)
        self.proposals, self.batch_size = proposals, batch_size

    # -- the attack ----------------------------------------------------------------------------------------

    def run(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: float, *, seed: int = 0
    ) -> AttackResult:
        start_time = time.perf_counter()
        check_batch(images, labels, self.name)
        b, _, h, w = images.shape
        n = pixel_count(size, h, w, self.name)
        device = model_device(model, images.device)
        x = images.detach().to(device=device, dtype=torch.float32)
        y = labels.to(device=device, dtype=torch.long)
        s = SearchState(model, x, y, n, self.batch_size or (8192 if device.type == "cuda" else 256), seed)

        with preserve_mode(model):
            everyone = torch.arange(b, device=device)
            with torch.no_grad():
                _, clean_wrong = s.evaluate(lambda i, j: x[i:j], everyone)
            active = (~clean_wrong).nonzero()[:, 0]
            spent = 1
            if active.numel():
                rank, active, spent = self._rank(s, active, spent)
                with torch.no_grad():
                    if active.numel() and n == 1:
                        self._corner_search(s, active, rank, self.max_queries - spent)
                    elif active.numel():
                        self._random_search(s, active, rank, self.max_queries - spent)

            adversarial = x.clone()
            found = torch.isfinite(s.margin).nonzero()[:, 0]
            if found.numel():
                adversarial[found] = s.paint(found, s.locs[found], s.cidx[found])

        return AttackResult(
            adversarial=adversarial.to(images.device, images.dtype),
            queries=s.qm.queries.to(images.device),
            iterations=0,
            seconds=time.perf_counter() - start_time,
            extra={
                "pixels": n,
                "success": s.wrong.tolist(),
                "misclassified_clean": clean_wrong.tolist(),
                "max_queries": self.max_queries,
            },
        )

    # -- 1. ranking the pixels (black-box: block probes and a pixel sweep) -----------------------------------

    def _rank(self, s: SearchState, active: torch.Tensor, spent: int) -> tuple[Ranking, torch.Tensor, int]:
        """Rank the pixels of the `active` images; returns the ranking, the images still searching (the sweep
        may flip some) and the queries each of those has spent."""
        x = s.x[active]
        a, c, h, w = x.shape
        pixels = x.reshape(a, c, h * w).transpose(1, 2)  # (A, HW, C)
        distance = (s.corners[None, None] - pixels[:, :, None]).square().sum(-1)  # (A, HW, K)
        corners = distance.argsort(dim=2, descending=True, stable=True)
        far = corners[..., 0]  # the farthest corner of each pixel: the strongest one-pixel change there
        order = distance.amax(2).argsort(dim=1, descending=True, stable=True)

        side = self.probe_block
        blocks_h, blocks_w = (math.ceil(h / side), math.ceil(w / side)) if side else (0, 0)
        if side and blocks_h * blocks_w <= self.max_queries - spent:
            block_of = ((torch.arange(h, device=x.device) // side)[:, None] * blocks_w
                        + (torch.arange(w, device=x.device) // side)[None, :]).reshape(-1)
            score = self._probe_blocks(s, active, far, block_of, blocks_h * blocks_w)
            spent += blocks_h * blocks_w
            # Most sensitive block first; inside a block, the pixel its farthest corner changes most first.
            by_block = score.gather(1, block_of[order]).argsort(dim=1, descending=True, stable=True)
            order = order.gather(1, by_block)

        share = self.sweep if self.sweep is not None else (1.0 if s.n == 1 else 0.25)
        left = self.max_queries - spent
        # For N > 1 the sweep only seeds the random search, which must keep queries of its own: a 300-query budget
        # on a 32x32 image once went entirely to probes and sweep, so every N scored like N = 1.
        swept = min(math.ceil(share * h * w), left if s.n == 1 else left // 2)
        cand = order[:, :swept] * s.corners.shape[0] + far.gather(1, order[:, :swept])
        margins, alive = s.stream(active, cand, swept)
        spent += swept
        # Swept pixels by the margin their farthest corner reached (lowest first), then the rest in sweep order.
        resorted = order[:, :swept].gather(1, margins.argsort(dim=1, stable=True))
        order = torch.cat([resorted, order[:, swept:]], dim=1)
        return Ranking(order[alive], corners[alive], swept), active[alive], spent

    def _probe_blocks(
        self, s: SearchState, active: torch.Tensor, far: torch.Tensor, block_of: torch.Tensor, blocks: int
    ) -> torch.Tensor:
        """(A, blocks) sensitivity: minus the margin with each block painted in its pixels' farthest corners.
        A probe changes more than N pixels, so it is never an attack, only a measurement."""
        a, c, h, w = s.x[active].shape
        far_image = s.corners[far].transpose(1, 2).reshape(a, c, h, w)
        masks = (block_of[None, :] == torch.arange(blocks, device=far.device)[:, None]).view(blocks, 1, h, w)
        owners = active.repeat_interleave(blocks)
        local = torch.arange(a, device=far.device).repeat_interleave(blocks)
        which = torch.arange(blocks, device=far.device).repeat(a)

        def make(i: int, j: int) -> torch.Tensor:
            return torch.where(masks[which[i:j]], far_image[local[i:j]], s.x[owners[i:j]])

        with torch.no_grad():
            margin, _ = s.evaluate(make, owners)
        return -margin.view(a, blocks)

    # -- 2. N = 1: every corner of every pixel, most sensitive pixels first ---------------------------------

    def _corner_search(self, s: SearchState, active: torch.Tensor, rank: Ranking, budget: int) -> None:
        k = s.corners.shape[0]
        corners = rank.corners.gather(1, rank.pixels[..., None].expand(-1, -1, k))  # (A, HW, K) in rank order
        cand = rank.pixels[..., None] * k + corners
        keep = torch.ones(cand.shape[1:], dtype=torch.bool, device=cand.device)
        keep[: rank.tried, 0] = False  # the sweep already tried these
        s.stream(active, cand[:, keep], budget)

    # -- 3. N > 1: Sparse-RS-style random search from the most sensitive pixels ------------------------------

    def _random_search(self, s: SearchState, active: torch.Tensor, rank: Ranking, budget: int) -> None:
        n, k, hw = s.n, s.corners.shape[0], s.h * s.w
        if budget < 1:
            return
        best = rank.corners[..., 0]  # (A, HW) the most promising corner of each location
        locs = rank.pixels[:, :n].clone()
        cidx = best.gather(1, locs)
        margin, wrong = s.evaluate_sets(active, locs, cidx)
        s.offer(active, margin[:, None], wrong[:, None], locs[:, None], cidx[:, None])
        pool = rank.pixels[:, : min(self.pool, hw)]
        keep, spent, step = ~wrong, 1, 0
        while keep.any() and spent < budget:
            active, locs, cidx, margin = active[keep], locs[keep], cidx[keep], margin[keep]
            best, pool = best[keep], pool[keep]
            step += 1
            q = min(self.proposals, budget - spent)
            moves = max(1, int(moved_share(spent, budget) * n))
            new_locs, new_cidx = self._propose(s.seed, active, step, q, locs, cidx, best, pool, moves, k, hw)
            owners = active.repeat_interleave(q)
            trial, wrong = s.evaluate_sets(owners, new_locs.reshape(-1, n), new_cidx.reshape(-1, n))
            trial, wrong = trial.view(-1, q), wrong.view(-1, q)
            flipped = s.offer(active, trial, wrong, new_locs, new_cidx)
            top = trial.argmin(dim=1)
            rows = torch.arange(active.numel(), device=active.device)
            better = trial[rows, top] < margin
            locs = torch.where(better[:, None], new_locs[rows, top], locs)
            cidx = torch.where(better[:, None], new_cidx[rows, top], cidx)
            margin = torch.where(better, trial[rows, top], margin)
            keep, spent = ~flipped, spent + q
        logger.debug("%s: random search ended after %d steps", self.name, step)

    def _propose(
        self,
        seed: int,
        active: torch.Tensor,
        step: int,
        q: int,
        locs: torch.Tensor,
        cidx: torch.Tensor,
        best: torch.Tensor,
        pool: torch.Tensor,
        moves: int,
        k: int,
        hw: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`q` proposals per image (A, q, N): `moves` of the N pixels get a new corner colour (the location's most
        promising corner or a random one, even odds) and, while free pixels remain, a new location: with
        probability `focus` one of the pool's pixels not in the set (distinct: a random top-`moves` of the
        pool), else a uniform one (which may rarely hit the set: then fewer than N pixels change)."""
        a, n = locs.shape
        moving = uniform(seed, active, step, _WHICH, (q, n)).argsort(dim=2)[..., :moves]
        new_locs = locs[:, None].repeat(1, q, 1)
        u = uniform(seed, active, step, _COLOUR, (q, moves, 4))
        if hw - n >= moves:
            keys = uniform(seed, active, step, _WHERE, (q, pool.shape[1]))
            taken = (pool[:, None, :, None] == new_locs[:, :, None, :]).any(dim=3)
            keys = keys.masked_fill(taken, -1.0)
            from_pool = pool.gather(1, keys.topk(min(moves, pool.shape[1]), dim=2).indices.reshape(a, -1))
            from_pool = from_pool.view(a, q, -1)
            anywhere = (u[..., 2] * hw).long()
            if from_pool.shape[2] < moves:  # a pool smaller than the moves: the rest go anywhere
                from_pool = torch.cat([from_pool, anywhere[..., from_pool.shape[2] :]], dim=2)
            new_locs.scatter_(2, moving, torch.where(u[..., 0] < self.focus, from_pool, anywhere))
        target = new_locs.gather(2, moving)
        colour = torch.where(
            u[..., 1] < 0.5, best.gather(1, target.reshape(a, -1)).view(a, q, moves), (u[..., 3] * k).long()
        )
        new_cidx = cidx[:, None].repeat(1, q, 1).scatter_(2, moving, colour)
        return new_locs, new_cidx


class PixelSearchGradient(PixelSearch):
    """White-box variant (`pixel_search_grad`): one gradient ranks the pixels and their corners."""

    white_box = True
    name = "pixel_search_grad"

    def __init__(
        self,
        max_queries: int = 1000,
        pool: int = 64,
        focus: float = 0.5,
        proposals: int = 4,
        batch_size: int | None = None,
    ):
        """The options of `PixelSearch` that apply without probes (see there)."""
        self._check_common(max_queries, pool, focus, proposals, batch_size)

    def _rank(self, s: SearchState, active: torch.Tensor, spent: int) -> tuple[Ranking, torch.Tensor, int]:
        """First-order margin change of every (pixel, corner) candidate from one gradient per image."""
        grads = []
        for i in range(0, active.numel(), s.batch_size):
            ids = active[i : i + s.batch_size]
            x = s.x[ids].clone().requires_grad_(True)
            with torch.enable_grad():
                logits = s.model(x).float()
                label = s.y[ids][:, None]
                margin = logits.gather(1, label)[:, 0] - logits.scatter(1, label, -torch.inf).amax(1)
                # A model whose output ignores the image has a zero gradient (and no graph to differentiate).
                grad = torch.autograd.grad(margin.sum(), x)[0] if margin.requires_grad else torch.zeros_like(x)
                grads.append(grad)
        s.qm.queries.index_add_(0, active, torch.ones_like(active))  # the gradient's forward pass
        grad = torch.cat(grads)
        a, c, h, w = grad.shape
        g = grad.reshape(a, c, h * w).transpose(1, 2)  # (A, HW, C)
        pixels = s.x[active].reshape(a, c, h * w).transpose(1, 2)
        drop = -((s.corners[None, None] - pixels[:, :, None]) * g[:, :, None]).sum(-1)  # (A, HW, K)
        corners = drop.argsort(dim=2, descending=True, stable=True)
        order = drop.amax(2).argsort(dim=1, descending=True, stable=True)
        return Ranking(order, corners, 0), active, spent + 1
