"""The syllabus: curriculum learning by an information metric (paper, section 4.3).

Samples are ordered simple-to-complex by the same ranking code as the volumizer's patches
(`voldefense.ranking`): a standalone metric scores each sample on its own, a distance metric scores it against
a reference sample (by default the lowest-entropy sample of the set being ordered).

Why a dataset-level sampler and not a reordered batch: with a mean-reduced loss the gradient of a batch is
``(1/B) * sum_i grad l(x_i)``, a sum, which does not depend on the order of the samples inside the batch
(batch-norm statistics are permutation-invariant too). A curriculum therefore has to act on *which* samples
are seen *when*: `curriculum_order` ranks the whole training set once, and `CurriculumSampler` feeds a
`torch.utils.data.DataLoader` from that ranking, growing the pool of admitted samples with a pacing schedule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Sampler

from voldefense.errors import ArgumentTypeError, ConfigError, TensorError, UsageError
from voldefense.ranking import (
    Order,
    Reference,
    check_order,
    check_reference,
    rank_samples,
    resolve_metric,
    score_groups,
    sort_scores,
)
from voldefense.specs import MetricSpec

logger = logging.getLogger(__name__)

Images = torch.Tensor | Iterable[Any]
Mode = Literal["ordered", "pacing"]
Schedule = Literal["linear", "step"]


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; float images unchanged; anything else is a `ConfigError`."""
    if not isinstance(images, torch.Tensor):
        raise ArgumentTypeError(f"images must be a tensor (M, C, H, W), got {type(images).__name__}")
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if not images.is_floating_point():
        raise TensorError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    return images


def order_batch(
    samples: torch.Tensor,
    metric: MetricSpec | str = "mi",
    *,
    reference: Reference = "auto",
    order: Order = "simple_first",
    metric_options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The permutation `(M,)` ordering one batch `samples` `(M, C, H, W)` (uint8 or float) by `metric`.

    `reference` for distance metrics: "auto" (the batch's lowest-entropy sample), a sample index, or a sample.
    This is `voldefense.ranking.rank_samples`; see the module docstring for why ordering a single batch does
    not change a mean-reduced gradient.
    """
    return rank_samples(
        as_float_images(samples), metric, reference=reference, order=order, metric_options=metric_options
    )[0]


def _batches(images: Images, batch_size: int, device: torch.device | None) -> Iterator[torch.Tensor]:
    """Float batches `(b, C, H, W)` from a tensor or an iterable of tensors or (tensor, ...) tuples."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise TensorError(f"images must have shape (M, C, H, W), got {tuple(images.shape)}")
        for start in range(0, images.shape[0], batch_size):
            yield as_float_images(images[start : start + batch_size].to(device))
        return
    for item in images:
        batch = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
            raise TensorError(
                "each item of the images iterable must be a batch tensor (b, C, H, W) or a tuple starting "
                f"with one, got {type(batch).__name__} {tuple(getattr(batch, 'shape', ()))}"
            )
        yield as_float_images(batch.to(device))


def _sample_at(images: Images, index: int, batch_size: int, device: torch.device | None) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        if not 0 <= index < images.shape[0]:
            raise ConfigError(f"reference index {index} is out of range for {images.shape[0]} samples")
        return as_float_images(images[index : index + 1].to(device))[0]
    seen = 0
    for batch in _batches(images, batch_size, device):
        if index < seen + batch.shape[0]:
            return batch[index - seen]
        seen += batch.shape[0]
    raise ConfigError(f"reference index {index} is out of range for {seen} samples")


def score_dataset(
    images: Images,
    metric: MetricSpec | str = "mi",
    *,
    reference: Reference = "auto",
    batch_size: int = 1024,
    metric_options: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    entropy: MetricSpec | str = "entropy",
    registry: Any = None,
) -> torch.Tensor:
    """One score per sample `(M,)` (float, on the CPU) of a whole dataset, computed batch by batch.

    `images`: a tensor `(M, C, H, W)` (uint8 or float in [0, 1]) or a re-iterable of batches (e.g. a
    non-shuffling DataLoader yielding `(images, labels)`). For distance metrics, `reference` is "auto" (the
    dataset's lowest-entropy sample: one extra pass), a dataset index, or a sample tensor `(C, H, W)`.
    `device`: where to compute (default: where the tensor is, or the CPU). `entropy`: the metric
    picking the "auto" reference. `registry`: where metric names are looked up (the process-wide registry when
    None).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    spec, metric_fn = resolve_metric(metric, metric_options, registry=registry)
    dev = torch.device(device) if device is not None else None
    reference = check_reference(reference)
    ref: torch.Tensor | None = None
    if spec.distance:
        if not isinstance(reference, torch.Tensor) and not isinstance(images, torch.Tensor):
            if iter(images) is images:  # type: ignore[arg-type]
                raise UsageError(
                    "finding the reference sample needs a second pass over the images: pass a tensor, a list "
                    "or a DataLoader, not a one-shot iterator (or pass the reference sample itself)"
                )
        if reference == "auto":
            options = {"bins": metric_options["bins"]} if metric_options and "bins" in metric_options else {}
            entropy_spec, _ = resolve_metric(entropy, registry=registry)
            lowest = score_dataset(
                images, entropy_spec, batch_size=batch_size, metric_options=options, device=device
            )
            if lowest.numel() == 0:
                raise ConfigError("cannot pick the lowest-entropy reference of an empty dataset")
            index = int(torch.sort(lowest, stable=True).indices[0])
            logger.debug(
                "curriculum reference: sample %d (lowest entropy %.4f)", index, float(lowest[index])
            )
            ref = _sample_at(images, index, batch_size, dev)
        elif isinstance(reference, int):
            ref = _sample_at(images, reference, batch_size, dev)
        else:
            ref = as_float_images(reference)
            ref = ref[0] if ref.dim() == 4 and ref.shape[0] == 1 else ref
    scores = []
    for batch in _batches(images, batch_size, dev):
        group_ref: Reference = ref.to(batch.device, batch.dtype) if ref is not None else "auto"
        # The same scoring code as the volumizer: this batch is one group of samples.
        scores.append(score_groups(batch.unsqueeze(0), spec, metric_fn, reference=group_ref)[0].cpu())
    return torch.cat(scores) if scores else torch.empty(0)


def curriculum_order(
    images: Images,
    metric: MetricSpec | str = "mi",
    *,
    reference: Reference = "auto",
    order: Order = "simple_first",
    batch_size: int = 1024,
    metric_options: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    entropy: MetricSpec | str = "entropy",
    registry: Any = None,
) -> torch.Tensor:
    """The permutation `(M,)` (long) ordering a whole dataset by `metric`: `perm[i]` is the index of the
    sample at rank i. Stable: equal scores keep dataset order. See `score_dataset` for the arguments."""
    check_order(order)
    spec, _ = resolve_metric(metric, metric_options, registry=registry)
    scores = score_dataset(
        images,
        spec,
        reference=reference,
        batch_size=batch_size,
        metric_options=metric_options,
        device=device,
        entropy=entropy,
        registry=registry,
    )
    return sort_scores(scores, order, spec)


class CurriculumSampler(Sampler[int]):
    """Feeds a DataLoader from a precomputed ordering (`curriculum_order`), with a pacing schedule.

    Modes:

    - ``"ordered"``: every epoch visits the whole set in rank order (no shuffling).
    - ``"pacing"``: at epoch e only the first ``ceil(f(e) * n)`` ranked samples are admitted, shuffled within
      that pool by a generator seeded from ``(seed, e)``. ``f`` grows from `start_fraction` at epoch 0 to 1 at
      epoch `pacing_epochs`: ``"linear"`` ``f(e) = s + (1 - s) * min(1, e / E)``; ``"step"`` the same in
      `steps` equal jumps, ``f(e) = s + (1 - s) * min(1, floor(e * steps / E) / steps)``.

    With `labels` (one class index per dataset sample) and ``stratify=True`` the pool is paced per class: class
    c admits its own first ``ceil(f(e) * n_c)`` ranked samples. A single global ranking would otherwise admit
    whole classes late — on CIFAR-10 the lowest-entropy half of 5,000 images holds 119 automobiles and 372
    birds — so the early epochs would train a skewed class prior, not just "simple images first".

    Call `set_epoch(e)` before each epoch (as with `DistributedSampler`); `len(sampler)` is that epoch's pool.
    """

    def __init__(
        self,
        order: torch.Tensor | Sequence[int],
        mode: Mode = "pacing",
        start_fraction: float = 0.25,
        pacing_epochs: int = 10,
        seed: int = 0,
        schedule: Schedule = "linear",
        steps: int = 4,
        labels: torch.Tensor | Sequence[int] | None = None,
        stratify: bool = False,
    ):
        order_t = torch.as_tensor(order)
        if order_t.dim() != 1 or order_t.is_floating_point() or order_t.dtype == torch.bool:
            raise TensorError(
                f"order must be a 1-D sequence of sample indices, got shape {tuple(order_t.shape)}"
            )
        if order_t.numel() == 0:
            raise ConfigError("order is empty: the curriculum needs at least one sample")
        if order_t.min() < 0 or order_t.unique().numel() != order_t.numel():
            raise ConfigError("order must list distinct non-negative sample indices (a permutation)")
        if mode not in ("ordered", "pacing"):
            raise ConfigError(f"mode must be 'ordered' or 'pacing', got {mode!r}")
        if schedule not in ("linear", "step"):
            raise ConfigError(f"schedule must be 'linear' or 'step', got {schedule!r}")
        start_ok = isinstance(start_fraction, (int, float)) and not isinstance(start_fraction, bool)
        if not start_ok or not 0 < start_fraction <= 1:
            raise ConfigError(f"start_fraction must be in (0, 1], got {start_fraction!r}")
        for name, value, low in (
            ("pacing_epochs", pacing_epochs, 0),
            ("steps", steps, 1),
            ("seed", seed, None),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
                raise ConfigError(
                    f"{name} must be an int{f' >= {low}' if low is not None else ''}, got {value!r}"
                )
        if not isinstance(stratify, bool):
            raise ConfigError(f"stratify must be true or false, got {stratify!r}")
        if stratify and labels is None:
            raise UsageError("stratify=True needs labels: one class index per dataset sample")
        self.order = order_t.long().clone()
        # The ranked order split by class (each keeps its rank order): the strata of a stratified pool.
        self.strata: list[torch.Tensor] | None = None
        if stratify:
            labels_t = torch.as_tensor(labels).long()
            if labels_t.dim() != 1 or labels_t.numel() <= int(self.order.max()):
                raise TensorError(
                    f"labels must be 1-D with one class per sample ({int(self.order.max()) + 1} or more), got "
                    f"shape {tuple(labels_t.shape)}"
                )
            ranked = labels_t[self.order]
            self.strata = [self.order[ranked == c] for c in ranked.unique(sorted=True).tolist()]
        self.mode = mode
        self.start_fraction = float(start_fraction)
        self.pacing_epochs = pacing_epochs
        self.seed = seed
        self.schedule = schedule
        self.steps = steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = epoch

    def fraction(self, epoch: int | None = None) -> float:
        """The admitted fraction of the ranked set at `epoch` (default: the current epoch)."""
        e = self.epoch if epoch is None else epoch
        if self.mode == "ordered" or self.pacing_epochs == 0:
            return 1.0
        progress = min(1.0, e / self.pacing_epochs)
        if self.schedule == "step":
            progress = min(1.0, math.floor(e * self.steps / self.pacing_epochs) / self.steps)
        return self.start_fraction + (1.0 - self.start_fraction) * progress

    @staticmethod
    def _admitted(n: int, fraction: float) -> int:
        return min(n, max(1, math.ceil(fraction * n - 1e-9)))

    def pool(self, epoch: int | None = None) -> torch.Tensor:
        """The admitted sample indices at `epoch` in rank order (per class, classes in label order, when
        stratified)."""
        fraction = self.fraction(epoch)
        if self.strata is None:
            return self.order[: self._admitted(self.order.numel(), fraction)]
        return torch.cat([s[: self._admitted(s.numel(), fraction)] for s in self.strata])

    def pool_size(self, epoch: int | None = None) -> int:
        fraction = self.fraction(epoch)
        if self.strata is None:
            return self._admitted(self.order.numel(), fraction)
        return sum(self._admitted(s.numel(), fraction) for s in self.strata)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """The sample indices of `epoch` (default: the current epoch), in the order they are served."""
        e = self.epoch if epoch is None else epoch
        if self.mode == "ordered":
            return self.order
        pool = self.pool(e)
        # Mix seed and epoch so that (seed, epoch) pairs do not collide, e.g. (0, 1) and (1, 0).
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
        return pool[torch.randperm(pool.numel(), generator=generator)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.pool_size()

    def __repr__(self) -> str:
        return (
            f"CurriculumSampler(n={self.order.numel()}, mode={self.mode!r}, "
            f"start_fraction={self.start_fraction}, pacing_epochs={self.pacing_epochs}, "
            f"schedule={self.schedule!r}, stratify={self.strata is not None}, seed={self.seed}, epoch={self.epoch})"
        )
