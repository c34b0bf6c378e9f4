"""Universal adversarial patch (Brown et al. 2017): one targeted patch for all images, trained on a *source*
model and pasted at random locations.

Settings: ``source="transfer"`` trains on a given source model (e.g. the undefended f) and applies the patch
to the attacked model (the paper's proactive claim); ``source="adaptive"`` trains on the attacked model
itself, through the whole pipeline. The source model is passed as the ``source_model`` option or, so a runner
can hand over f at run time, as ``run(..., source_model=f)``.

Backends: ``"art"`` trains with ART's `AdversarialPatchPyTorch` (needs torchvision, the ``patch`` extra);
``"torch"`` is our own expectation-over-transformation loop (random placement only, Adam on the target-class
log-probability); ``"auto"`` picks ART when torchvision is importable. Either way the trained patch is square
(the image's aspect ratio), covers `size` of the image area, and is pasted by the same code at uniformly
random locations, so both backends are evaluated identically. The backend used is reported in
``extra["backend"]``.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from voldefense.attacks.base import AttackResult, preserve_mode
from voldefense.attacks.regions import check_inputs, generator_for, paste, patch_sides, random_locations
from voldefense.errors import ArgumentTypeError, ConfigError, TensorError

logger = logging.getLogger(__name__)

Source = Literal["transfer", "adaptive"]
Backend = Literal["auto", "torch", "art"]


def torchvision_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


class UniversalPatch:
    """Targeted universal patch attack; size = patch area as a fraction of the image (e.g. 0.01..0.25).

    Args:
        source: "transfer" (train on `source_model`) or "adaptive" (train on the attacked model).
        source_model: the model to train on for "transfer" (may instead be given to `run`).
        target_class: the class the patch pushes every image towards.
        iterations: optimiser steps; each sees `batch_size` training images at fresh random locations.
        learning_rate: Adam step size on patch pixels in [0, 1].
        copies: attacked copies per image, each at its own random location (R > 1 returns `(R, B, C, H, W)`).
        backend: "auto", "torch" or "art" (see the module docstring).
    """

    def __init__(
        self,
        *,
        source: Source = "adaptive",
        source_model: nn.Module | None = None,
        target_class: int = 0,
        iterations: int = 100,
        learning_rate: float = 0.05,
        batch_size: int = 32,
        copies: int = 1,
        backend: Backend = "auto",
    ) -> None:
        if source not in ("transfer", "adaptive"):
            raise ConfigError(f"patch source must be 'transfer' or 'adaptive', not {source!r}")
        if source_model is not None and not isinstance(source_model, nn.Module):
            raise ArgumentTypeError(f"source_model must be an nn.Module, got {type(source_model).__name__}")
        if int(target_class) < 0:
            raise ConfigError(f"target_class must be a class index >= 0, got {target_class}")
        if int(iterations) < 1 or int(batch_size) < 1 or int(copies) < 1:
            raise ConfigError("iterations, batch_size and copies must each be at least 1")
        if not float(learning_rate) > 0:
            raise ConfigError(f"learning_rate must be positive, got {learning_rate}")
        if backend not in ("auto", "torch", "art"):
            raise ConfigError(f"patch backend must be 'auto', 'torch' or 'art', not {backend!r}")
        if backend == "art" and not torchvision_available():
            raise ConfigError(
                "patch backend 'art' needs torchvision: pip install 'voldefense[patch]', or use 'torch'"
            )
        self.source = source
        self.source_model = source_model
        self.target_class = int(target_class)
        self.iterations = int(iterations)
        self.learning_rate = float(learning_rate)
        self.batch_size = int(batch_size)
        self.copies = int(copies)
        self.backend = backend

    def resolved_backend(self) -> str:
        if self.backend == "auto":
            return "art" if torchvision_available() else "torch"
        return self.backend

    # -- training

    def train(self, source: nn.Module, images: torch.Tensor, size: float, *, seed: int = 0) -> torch.Tensor:
        """Train the universal patch `(C, h, w)` on `images` against `source`; returns it in [0, 1]."""
        _, c, h, w = images.shape
        side_h, side_w = patch_sides(size, h, w)
        with preserve_mode(source):
            with torch.no_grad():
                k = int(source(images[:1]).shape[-1])
            if self.target_class >= k:
                raise ConfigError(f"target_class {self.target_class} is not a class of this {k}-class model")
            if self.resolved_backend() == "art":
                return self._train_art(source, images, side_h, side_w, k, seed)
            return self._train_torch(source, images, side_h, side_w, seed)

    def _train_torch(self, source: nn.Module, images: torch.Tensor, side_h: int, side_w: int, seed: int):
        g = generator_for(seed)
        n, c, h, w = images.shape
        patch = (
            torch.rand((c, side_h, side_w), generator=g).to(images.device, images.dtype).requires_grad_(True)
        )
        optimizer = torch.optim.Adam([patch], lr=self.learning_rate)
        target = torch.full((min(self.batch_size, n),), self.target_class, device=images.device)
        for _ in range(self.iterations):
            idx = torch.randint(0, n, (target.shape[0],), generator=g)
            locations = random_locations(len(idx), side_h, side_w, h, w, g)
            logits = source(paste(images[idx.to(images.device)], patch, locations))
            # Maximise the target log-probability averaged over placements (EOT over location).
            loss = F.cross_entropy(logits, target)
            (grad,) = torch.autograd.grad(loss, patch)
            patch.grad = grad
            optimizer.step()
            with torch.no_grad():
                patch.clamp_(0, 1)
        return patch.detach()

    def _train_art(
        self, source: nn.Module, images: torch.Tensor, side_h: int, side_w: int, k: int, seed: int
    ):
        from art.attacks.evasion import AdversarialPatchPyTorch

        from voldefense.estimator import VolumizedClassifier

        _, c, h, w = images.shape
        classifier = VolumizedClassifier(source, k, (c, h, w), device="gpu" if images.is_cuda else "cpu")
        # ART pads a full-image patch and rescales it: scale s gives an on-image patch of s * image side,
        # placed uniformly (translations up to (1 - s) * side). A fixed scale fixes the patch area.
        scale = side_h / h
        attack = AdversarialPatchPyTorch(
            classifier,
            rotation_max=0.0,
            scale_min=scale,
            scale_max=scale,
            distortion_scale_max=0.0,
            learning_rate=self.learning_rate,
            max_iter=self.iterations,
            batch_size=self.batch_size,
            patch_shape=(c, h, w),
            patch_type="square",
            optimizer="Adam",
            targeted=True,
            verbose=False,
        )
        x = images.detach().cpu().float().numpy()
        y = np.eye(k, dtype=np.float32)[np.full(len(x), self.target_class)]
        state = np.random.get_state()
        try:
            np.random.seed(int(seed) % 2**32)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                patch, _ = attack.generate(x=x, y=y)
        finally:
            np.random.set_state(state)
        full = torch.from_numpy(np.asarray(patch, dtype=np.float32)).unsqueeze(0)
        small = F.interpolate(
            full, size=(side_h, side_w), mode="bilinear", antialias=True, align_corners=False
        )
        return small[0].clamp(0, 1).to(images.device, images.dtype)

    # -- attack

    def apply(
        self, patch: torch.Tensor, images: torch.Tensor, *, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Paste `patch` at uniformly random locations: `(R, B, C, H, W)` images and `(R, B, 2)` corners."""
        g = generator_for(seed)
        b, _, h, w = images.shape
        _, side_h, side_w = patch.shape
        copies, corners = [], []
        for _ in range(self.copies):
            loc = random_locations(b, side_h, side_w, h, w, g)
            copies.append(paste(images, patch, loc))
            corners.append(loc)
        return torch.stack(copies), torch.stack(corners)

    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        size: float,
        *,
        seed: int = 0,
        source_model: nn.Module | None = None,
        train_images: torch.Tensor | None = None,
    ) -> AttackResult:
        """Train one patch (on `train_images` if given, else on `images`) and paste it on every image.

        Queries count forward passes of the *attacked* model per attacked image: for "adaptive" the training
        passes spread over the images (the patch is universal); for "transfer" zero
        (``extra["source_queries"]`` holds the source model's passes)."""
        check_inputs(images, labels)
        start = time.perf_counter()
        if self.source == "adaptive":
            source = model
        else:
            source = source_model if source_model is not None else self.source_model
            if source is None:
                raise ConfigError(
                    "patch source 'transfer' needs a source model: set the source_model option or pass "
                    "run(..., source_model=f); or use source 'adaptive'"
                )
        training = images if train_images is None else train_images
        if training.dim() != 4 or training.shape[1:] != images.shape[1:]:
            raise TensorError(
                f"train_images must be (N, {', '.join(map(str, images.shape[1:]))}) like the images"
            )
        patch = self.train(source, training.detach(), size, seed=seed)
        with torch.no_grad():
            adversarial, corners = self.apply(patch, images, seed=seed + 1)
        training_passes = self.iterations * min(self.batch_size, training.shape[0])
        b = images.shape[0]
        own = training_passes / b if self.source == "adaptive" else 0.0
        queries = torch.full((b,), own, dtype=torch.float64)
        extra = {
            "backend": self.resolved_backend(),
            "source": self.source,
            "target_class": self.target_class,
            "patch_size": list(patch.shape[1:]),
            "source_queries": training_passes,
            "locations": corners.tolist(),
        }
        result = adversarial[0] if self.copies == 1 else adversarial
        return AttackResult(result, queries, self.iterations, time.perf_counter() - start, extra)
