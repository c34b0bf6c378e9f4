"""N-pixel attacks: the paper's random-pixel protocol and ART's PixelAttack (differential evolution)."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import nn

from voldefense.attacks.base import AttackResult, predict_logits, preserve_mode
from voldefense.attacks.regions import QueryCounter, check_inputs, generator_for, pixel_budget
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)


class RandomPixels:
    """The paper's validation protocol: N pixels set to uniform random values inside one of the four image
    quadrants, chosen at random for each attacked copy; when N pixels do not fit in a quadrant they are
    placed in a centred region of about N pixels instead. `copies` attacked copies per image, returned as
    `(R, B, C, H, W)`; the evaluation averages their classifications.

    No model queries are spent (the attack is blind). For a fixed seed the placements are nested: the N-pixel
    attack changes a subset of the pixels the (N+1)-pixel attack changes, to the same values, as long as
    both fit in a quadrant — so accuracy curves over N are not blurred by fresh randomness at each N.
    """

    def __init__(self, *, copies: int = 5) -> None:
        if int(copies) < 1:
            raise ConfigError(f"copies must be at least 1, got {copies}")
        self.copies = int(copies)

    def run(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: float, *, seed: int = 0
    ) -> AttackResult:
        check_inputs(images, labels)
        start = time.perf_counter()
        b, c, h, w = images.shape
        n_pixels = pixel_budget(size, h, w)
        g = generator_for(seed)
        r = self.copies
        qh, qw = h // 2, w // 2
        if n_pixels <= qh * qw:
            region_h, region_w = qh, qw
            quadrant = torch.randint(0, 4, (r, b), generator=g)
            row0 = (quadrant // 2) * (h - qh)  # the bottom quadrants end at the image border (odd sizes)
            col0 = (quadrant % 2) * (w - qw)
            placement = "quadrant"
        else:
            region_h = min(h, math.ceil(math.sqrt(n_pixels)))
            region_w = min(w, math.ceil(n_pixels / region_h))
            row0 = torch.full((r, b), (h - region_h) // 2)
            col0 = torch.full((r, b), (w - region_w) // 2)
            placement = "centre"
        cells = region_h * region_w
        # Draw orderings and values for every cell of the region so smaller N take a prefix (nesting).
        order = torch.rand((r, b, cells), generator=g).argsort(-1)[..., :n_pixels]
        values = torch.rand((r, b, c, cells), generator=g)
        values = torch.gather(values, 3, order.unsqueeze(2).expand(r, b, c, n_pixels))
        rows = row0.unsqueeze(-1) + order // region_w
        cols = col0.unsqueeze(-1) + order % region_w
        flat = (rows * w + cols).to(images.device)  # (R, B, N)
        adversarial = images.unsqueeze(0).repeat(r, 1, 1, 1, 1).flatten(3)  # (R, B, C, H*W)
        adversarial.scatter_(
            3, flat.unsqueeze(2).expand(r, b, c, n_pixels), values.to(images.device, images.dtype)
        )
        adversarial = adversarial.view(r, b, c, h, w)
        extra = {"placement": placement, "copies": r}
        queries = torch.zeros(b, dtype=torch.long)
        return AttackResult(adversarial, queries, 0, time.perf_counter() - start, extra)


class ARTPixelAttack:
    """ART's `PixelAttack` (untargeted, differential evolution with `es=1`, or CMA-ES with `es=0`, which needs
    the `cma` package) on the full pipeline through `VolumizedClassifier`; size = N pixels (ART's `th`).

    ART attacks one image at a time and evaluates a population of ~400 candidates per generation, so this is
    slow: about `400 * (max_iter + 1)` queries per image that resists. Images the model already misclassifies
    are left unchanged (one query). ART quantises candidate values to multiples of 1/255; pixels ART did not
    choose are restored bit-exactly (its 0..255 rescaling round trip would otherwise nudge them).
    """

    def __init__(self, *, max_iter: int = 10, es: int = 1, verbose: bool = False) -> None:
        if int(max_iter) < 1:
            raise ConfigError(f"max_iter must be at least 1, got {max_iter}")
        if es not in (0, 1):
            raise ConfigError(f"es must be 1 (differential evolution) or 0 (CMA-ES, needs 'cma'), not {es!r}")
        if es == 0:
            try:
                import cma  # noqa: F401
            except ImportError:
                raise ConfigError("pixel attack with es=0 needs the 'cma' package: pip install cma") from None
        self.max_iter = int(max_iter)
        self.es = int(es)
        self.verbose = bool(verbose)

    def run(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, size: float, *, seed: int = 0
    ) -> AttackResult:
        from art.attacks.evasion import PixelAttack

        from voldefense.estimator import VolumizedClassifier

        check_inputs(images, labels)
        start = time.perf_counter()
        b, c, h, w = images.shape
        n_pixels = pixel_budget(size, h, w)
        counter = QueryCounter(model)
        adversarial = images.clone()
        queries = torch.zeros(b, dtype=torch.long)
        with preserve_mode(model):
            clean_pred = predict_logits(model, images).argmax(1).cpu()
            queries += 1
            classifier = VolumizedClassifier.from_images(
                counter, images, device="gpu" if images.is_cuda else "cpu"
            )
            attack = PixelAttack(
                classifier,
                th=n_pixels,
                es=self.es,
                max_iter=self.max_iter,
                targeted=False,
                verbose=self.verbose,
            )
            # ART's differential evolution draws from numpy's global generator: seed it per image, then
            # restore it.
            state = np.random.get_state()
            try:
                for i in range(b):
                    if clean_pred[i] != labels[i].cpu():
                        continue
                    np.random.seed((int(seed) * 1_000_003 + i) % 2**32)
                    counter.count = 0
                    x = images[i : i + 1].detach().cpu().float().numpy()
                    adv = attack.generate(x, y=labels[i : i + 1].cpu().numpy())
                    queries[i] += counter.count
                    adv_t = torch.from_numpy(adv).to(images.device, images.dtype)
                    changed = ((adv_t - images[i : i + 1]).abs() > 0.5 / 255).any(dim=1, keepdim=True)
                    adversarial[i : i + 1] = torch.where(changed, adv_t.clamp(0, 1), images[i : i + 1])
            finally:
                np.random.set_state(state)
        return AttackResult(
            adversarial, queries, self.max_iter, time.perf_counter() - start, {"th": n_pixels}
        )
