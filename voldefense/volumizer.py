"""The volumizer (paper, section 4.1): images -> ranked patch volumes, and back.

An image ``(C, H, W)`` is cut into the ``N = (H / ph) * (W / pw)`` non-overlapping patches of its grid
(indexed row-major), the patches are ranked (by an information metric, see `voldefense.ranking`) and stacked
along a new depth axis: the volume ``(C, N, ph, pw)``. ``perm[b, i]`` is the source patch index of depth
slice i.

The ranking is computed on detached pixels and is not differentiated; the volume is a gather of the input
pixels, so gradients flow from the volume back to the pixels (white-box attacks see through the volumizer).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from voldefense.errors import ConfigError, TensorError
from voldefense.ranking import (
    Order,
    check_order,
    check_reference,
    reference_entropy,
    resolve_metric,
    score_groups,
    sort_scores,
)
from voldefense.specs import MetricSpec

logger = logging.getLogger(__name__)

Ranking = Literal["metric", "identity", "random"]
RANKINGS: tuple[str, ...] = ("metric", "identity", "random")


def _pair(value: object, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise ConfigError(f"{what} must be a positive int or a pair of positive ints (h, w), got {value!r}")
    return int(pair[0]), int(pair[1])


class Volumizer(nn.Module):
    """Cut images into patches, rank them and stack them into a volume.

    Args:
        patch_size: ``ph = pw`` or ``(ph, pw)``.
        metric: a registered metric name or a `MetricSpec` (used when ``ranking="metric"``).
        reference: for distance metrics, ``"auto"`` (each image's lowest-entropy patch), a patch index
            (row-major), or a patch tensor ``(C, ph, pw)`` (or one per image ``(B, C, ph, pw)``).
        order: ``"ascending"`` / ``"descending"`` on the raw score, or ``"simple_first"`` /
            ``"complex_first"`` (resolved with the metric's ``larger_is_simpler``).
        ranking: ``"metric"`` (the paper), ``"identity"`` (keep row-major order) or ``"random"`` (a random
            permutation per image, for ablations).
        pad: when H or W is not a multiple of the patch size, replicate-pad the bottom/right edges up to the
            next multiple (instead of raising `ConfigError`); `unvolumize` crops the padding off again.
            Replicate, not zeros: a black border makes flat, zero-entropy patches that would win the
            ``"auto"`` reference.
        metric_options: options for the metric's factory (e.g. ``{"bins": 64}``).
        seed: for ``ranking="random"``: None draws from torch's global RNG (reproducible under
            ``torch.manual_seed``); an int seeds a private generator at construction, so the sequence of
            permutations over successive calls is reproducible whatever else uses the global RNG.
    """

    def __init__(
        self,
        patch_size: int | tuple[int, int] = 16,
        metric: MetricSpec | str = "mi",
        reference: str | int | torch.Tensor = "auto",
        order: Order = "ascending",
        ranking: Ranking = "metric",
        pad: bool = False,
        metric_options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        entropy: MetricSpec | str = "entropy",
        registry: Any = None,
    ):
        super().__init__()
        self.patch_size = _pair(patch_size, "patch_size")
        self.order = check_order(order)
        self.reference = check_reference(reference)
        if ranking not in RANKINGS:
            raise ConfigError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
        self.ranking = ranking
        if not isinstance(pad, bool):
            raise ConfigError(f"pad must be true or false, got {pad!r}")
        self.pad = pad
        self.metric_options = dict(metric_options or {})
        # Resolve and build once now: a bad name or option fails at construction, not at the first batch, and
        # no call pays for a registry lookup or a metric construction (see `_built_metrics`).
        self.metric_spec, _ = resolve_metric(metric, self.metric_options, registry=registry)
        # The "auto" reference of a distance metric is the lowest-entropy patch: its spec is looked up now, in the
        # same registry as the metric, and no registry is kept on the module.
        self.entropy_spec = (
            resolve_metric(entropy, registry=registry)[0] if self.metric_spec.distance else None
        )
        self._built: tuple[object, Any, Any] | None = None
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    # -- geometry -------------------------------------------------------------------------------------------

    def grid(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Patch rows and columns for images of `image_size` (H, W); raises unless divisible or `pad`."""
        h, w = _pair(image_size, "image_size")
        ph, pw = self.patch_size
        if h % ph or w % pw:
            if not self.pad:
                raise ConfigError(
                    f"image size {h}x{w} is not divisible by the patch size {ph}x{pw}: resize the images, "
                    "choose a patch size that divides it, or set pad=True"
                )
            return -(-h // ph), -(-w // pw)
        return h // ph, w // pw

    def num_patches(self, image_size: int | tuple[int, int]) -> int:
        """N, the depth of the volume of an image of `image_size` (H, W)."""
        rows, cols = self.grid(image_size)
        return rows * cols

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """The patches `(B, N, C, ph, pw)` of images `(B, C, H, W)`, row-major grid order (differentiable)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise TensorError(
                f"images must be a tensor of shape (B, C, H, W), got {getattr(x, 'shape', None)}"
            )
        b, c, h, w = x.shape
        rows, cols = self.grid((h, w))
        ph, pw = self.patch_size
        if (rows * ph, cols * pw) != (h, w):
            x = F.pad(x, (0, cols * pw - w, 0, rows * ph - h), mode="replicate")
        return (
            x.reshape(b, c, rows, ph, cols, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, rows * cols, c, ph, pw)
        )

    # -- ranking --------------------------------------------------------------------------------------------

    def _built_metrics(self) -> tuple[Any, Any]:
        """The ranking metric and the ``"auto"`` reference's entropy, built once (rebuilt only if the spec or
        options were reassigned after construction)."""
        key = (self.metric_spec, dict(self.metric_options))
        if self._built is None or self._built[0] != key:
            metric_fn = self.metric_spec.build(**self.metric_options)
            entropy_fn = (
                reference_entropy(self.metric_options, entropy=self.entropy_spec)
                if self.entropy_spec is not None
                else None
            )
            self._built = (key, metric_fn, entropy_fn)
        return self._built[1], self._built[2]

    @property
    def stochastic(self) -> bool:
        """Whether two calls on the same images may rank them differently (``ranking="random"``: even a seeded
        generator advances between calls); the evaluation classifies such models over several draws."""
        return self.ranking == "random"

    def rank(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(perm (B, N), scores (B, N) or None)`; scores in source order."""
        b, n = patches.shape[:2]
        device = patches.device
        if self.ranking == "identity":
            return torch.arange(n, device=device).expand(b, n).clone(), None
        if self.ranking == "random":
            # Draw on the CPU so the permutation for a seed does not depend on the device.
            keys = torch.rand(b, n, generator=self._generator)
            return keys.argsort(dim=1).to(device), None
        # rank_groups' two steps, with the metric built once instead of per call.
        metric_fn, entropy_fn = self._built_metrics()
        scores = score_groups(
            patches,
            self.metric_spec,
            metric_fn,
            reference=self.reference,
            metric_options=self.metric_options,
            entropy_fn=entropy_fn,
        )
        return sort_scores(scores, self.order, self.metric_spec), scores

    def volumize_with_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`(volume, perm, scores)`: `scores` `(B, N)` in source order (None unless ranking="metric")."""
        patches = self.patches(x)
        perm, scores = self.rank(patches)
        b, n = patches.shape[:2]
        # Gather whole patches as rows of the flat (B*N, C, ph, pw) view: index_select copies contiguous
        # rows (measured ~15% faster on CPU than advanced indexing); same values and gradient.
        rows = (perm + torch.arange(0, b * n, n, device=patches.device).unsqueeze(1)).reshape(-1)
        ranked = patches.reshape(b * n, *patches.shape[2:]).index_select(0, rows).view(patches.shape)
        return ranked.permute(0, 2, 1, 3, 4), perm, scores

    def volumize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images `(B, C, H, W)` -> `(volume (B, C, N, ph, pw), perm (B, N))`."""
        volume, perm, _ = self.volumize_with_scores(x)
        return volume, perm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `(B, C, H, W)` -> volume `(B, C, N, ph, pw)`."""
        return self.volumize(x)[0]

    def unvolumize(
        self, volume: torch.Tensor, perm: torch.Tensor, image_size: int | tuple[int, int]
    ) -> torch.Tensor:
        """Put every depth slice back at its source position: the exact inverse of `volumize`."""
        h, w = _pair(image_size, "image_size")
        rows, cols = self.grid((h, w))
        ph, pw = self.patch_size
        if (
            not isinstance(volume, torch.Tensor)
            or volume.dim() != 5
            or tuple(volume.shape[2:])
            != (
                rows * cols,
                ph,
                pw,
            )
        ):
            raise TensorError(
                f"volume must have shape (B, C, {rows * cols}, {ph}, {pw}) for images of size {h}x{w}, "
                f"got {getattr(volume, 'shape', None)}"
            )
        b, c = volume.shape[:2]
        if not isinstance(perm, torch.Tensor) or tuple(perm.shape) != (b, rows * cols):
            raise TensorError(
                f"perm must have shape ({b}, {rows * cols}), got {getattr(perm, 'shape', None)}"
            )
        inverse = perm.to(volume.device).argsort(dim=1)  # slice index of each source patch
        patches = volume.permute(0, 2, 1, 3, 4)[torch.arange(b, device=volume.device).unsqueeze(1), inverse]
        images = (
            patches.reshape(b, rows, cols, c, ph, pw)
            .permute(0, 3, 1, 4, 2, 5)
            .reshape(b, c, rows * ph, cols * pw)
        )
        return images[:, :, :h, :w]

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, metric={self.metric_spec.name!r}, reference={self.reference!r}, "
            f"order={self.order!r}, ranking={self.ranking!r}, pad={self.pad}"
        )
