"""The state of one `pixel_search` run (`voldefense.attacks.pixel_search`): per image the best candidate so far,
the query counter, and the batched evaluation of candidate sets and of one-pixel candidate streams."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from voldefense.attacks._pixel_search import QueryModel, colour_corners, paint_corner_candidates, paint_pixels


@dataclass
class Ranking:
    """Per searching image: `pixels` (A, HW) locations, most sensitive first; `corners` (A, HW, K) corner indices
    per location, most promising first; `tried`: how many leading `pixels` already had their first corner
    evaluated."""

    pixels: torch.Tensor
    corners: torch.Tensor
    tried: int = 0


class SearchState:
    """The state of one `run` call: inputs, query counter and the best candidate of each image so far."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, batch_size: int, seed: int):
        self.model, self.x, self.y, self.n, self.seed = model, x, y, n, seed
        self.batch_size = batch_size
        b, c, self.h, self.w = x.shape
        self.corners = colour_corners(c, x.device)
        self.qm = QueryModel(model, y, batch_size, fitness="margin")
        self.margin = torch.full((b,), torch.inf, device=x.device)
        self.wrong = torch.zeros(b, dtype=torch.bool, device=x.device)
        self.locs = torch.zeros(b, n, dtype=torch.long, device=x.device)
        self.cidx = torch.zeros(b, n, dtype=torch.long, device=x.device)

    def evaluate(self, make, owners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margins and misclassification of candidates built by ``make(start, stop)`` for images `owners`."""
        margin, pred = self.qm.evaluate(make, owners)
        return margin, pred != self.y[owners]

    def paint(self, owners: torch.Tensor, locs: torch.Tensor, cidx: torch.Tensor) -> torch.Tensor:
        """Images `owners` with pixels `locs` (M, j) set to corners `cidx` (M, j)."""
        return paint_pixels(self.x[owners], locs // self.w, locs % self.w, self.corners[cidx])

    def evaluate_sets(
        self, owners: torch.Tensor, locs: torch.Tensor, cidx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Margins and misclassification of images `owners` with pixels `locs` (M, N) set to corners `cidx`."""
        return self.evaluate(lambda i, j: self.paint(owners[i:j], locs[i:j], cidx[i:j]), owners)

    def offer(
        self,
        ids: torch.Tensor,
        margin: torch.Tensor,
        wrong: torch.Tensor,
        locs: torch.Tensor,
        cidx: torch.Tensor,
        ordered: bool = False,
    ) -> torch.Tensor:
        """Candidates (A, M) of images `ids` (locations and corners (A, M, j), j = 1 or N): keep per image the
        best so far (a misclassified one first, then the lowest margin); return which images were flipped.
        `ordered`: the candidates are in search order, and the first misclassified one is kept (so the result
        does not depend on how many candidates a round happened to hold)."""
        flipped = wrong.any(dim=1)
        first_wrong = wrong.to(torch.uint8).argmax(1) if ordered else torch.where(wrong, margin, torch.inf).argmin(1)
        pick = torch.where(flipped, first_wrong, margin.argmin(1))
        rows = torch.arange(ids.numel(), device=ids.device)
        m, w = margin[rows, pick], wrong[rows, pick]
        better = (w & ~self.wrong[ids]) | ((w == self.wrong[ids]) & (m < self.margin[ids]))
        sel = ids[better]
        self.margin[sel], self.wrong[sel] = m[better], w[better]
        self.locs[sel] = locs[rows, pick][better].expand(-1, self.n)
        self.cidx[sel] = cidx[rows, pick][better].expand(-1, self.n)
        return flipped

    def stream(self, active: torch.Tensor, cand: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluate one-pixel candidates ``cand`` (A, L) (``location * K + corner``) in order, at most `budget`
        per image, every still-searching image advancing by the same number of candidates per round (about one
        `batch_size` of model inputs). Returns the margins (A, L') (inf where not evaluated) and which images
        were not flipped (those spent exactly L' = min(L, budget) queries)."""
        k = self.corners.shape[0]
        length = min(cand.shape[1], max(budget, 0))
        margins = torch.full((cand.shape[0], length), torch.inf, device=cand.device)
        alive = torch.ones(cand.shape[0], dtype=torch.bool, device=cand.device)
        start = 0
        while start < length and alive.any():
            rows = alive.nonzero()[:, 0]
            step = min(length - start, max(1, self.batch_size // rows.numel()))
            block = cand[rows, start : start + step]
            owners = active[rows].repeat_interleave(step)
            flat = block.reshape(-1)

            def make(s: int, e: int, owners: torch.Tensor = owners, flat: torch.Tensor = flat) -> torch.Tensor:
                return paint_corner_candidates(self.x[owners[s:e]], flat[s:e], self.corners, self.w)

            margin, wrong = self.evaluate(make, owners)
            margin, wrong = margin.view(-1, step), wrong.view(-1, step)
            margins[rows, start : start + step] = margin
            flipped = self.offer(
                active[rows], margin, wrong, (block // k)[..., None], (block % k)[..., None], ordered=True
            )
            alive[rows[flipped]] = False
            start += step
        return margins, alive
