"""The one ranking routine: order the samples of each group by an information metric.

The volumizer ranks the patches of each image (a group = one image's patches) and the syllabus ranks training
samples (one group = a batch, or the whole dataset); both call this module, so ordering, reference selection
and tie-breaking are defined once.

- Standalone metrics (entropy) score every sample on its own.
- Distance metrics score every sample against a reference sample of its group: ``"auto"`` = the group's
  lowest-entropy sample (ties: the lowest index), an int = that sample index, or a tensor (one shared
  reference ``(C, h, w)``, or one per group ``(B, C, h, w)``).
- ``order``: ``"ascending"`` / ``"descending"`` sort the raw scores; ``"simple_first"`` / ``"complex_first"``
  use the metric's ``larger_is_simpler`` flag so that, e.g., MI (larger = more similar) and MSE (larger = more
  different) mean the same thing.
- Sorting is stable (equal scores keep their original order, so ties are broken by index) and runs on detached
  scores: the ranking is never differentiated.
- Per-group references are broadcast, never copied once per sample, when the metric offers the optional
  ``grouped(x (B, M, C, h, w), reference (B, 1, C, h, w)) -> (B, M)`` method (all built-in distance metrics
  do; see `voldefense.plugins.metrics._distance`); otherwise the metric gets the flat call.
- Callers that rank batch after batch (the volumizer) build the metric once and call `score_groups` /
  `sort_scores` directly; nothing here reads a GPU value back to the host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import torch

from voldefense.errors import ConfigError, PluginError, TensorError, UsageError
from voldefense.registry import get_registry
from voldefense.specs import MetricSpec

Order = Literal["ascending", "descending", "simple_first", "complex_first"]
ORDERS: tuple[str, ...] = get_args(Order)
Reference = str | int | torch.Tensor

MetricFn = Callable[..., torch.Tensor]


def check_order(order: object) -> str:
    """`order` must be one of `ORDERS`."""
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    return str(order)


def check_reference(reference: object) -> Reference:
    """`reference` must be "auto", a non-negative int or a tensor."""
    if isinstance(reference, torch.Tensor) or reference == "auto":
        return reference  # type: ignore[return-value]
    if isinstance(reference, int) and not isinstance(reference, bool) and reference >= 0:
        return reference
    raise ConfigError(f"reference must be 'auto', a non-negative sample index or a tensor, got {reference!r}")


def resolve_metric(
    metric: MetricSpec | str, metric_options: Mapping[str, Any] | None = None, *, registry: Any = None
) -> tuple[MetricSpec, MetricFn]:
    """The metric's spec and the built metric; unknown names and options raise one-line `VoldefenseError`s.

    A name is looked up in `registry` when one is given (the process-wide registry only when none is)."""
    if isinstance(metric, str):
        spec = (registry if registry is not None else get_registry()).get("metric", metric)
    elif isinstance(metric, MetricSpec):
        spec = metric
    else:
        raise ConfigError(
            f"metric must be a registered metric name or a MetricSpec, got {type(metric).__name__}"
        )
    return spec, spec.build(**dict(metric_options or {}))


def is_descending(order: str, spec: MetricSpec) -> bool:
    """Whether `order` sorts the raw scores of `spec`'s metric from large to small."""
    order = check_order(order)
    if order in ("ascending", "descending"):
        return order == "descending"
    # simple_first: the simplest sample first, i.e. the largest score when larger means simpler.
    return spec.larger_is_simpler == (order == "simple_first")


def sort_scores(scores: torch.Tensor, order: str, spec: MetricSpec) -> torch.Tensor:
    """Stable sort of `scores` `(..., M)` along the last dim; returns the permutation (long)."""
    return torch.sort(scores.detach(), dim=-1, stable=True, descending=is_descending(order, spec)).indices


def _entropy_options(metric_options: Mapping[str, Any] | None) -> dict[str, Any]:
    # The auto reference uses the same intensity binning as the ranking metric when it has one.
    if metric_options and "bins" in metric_options:
        return {"bins": metric_options["bins"]}
    return {}


def reference_entropy(
    metric_options: Mapping[str, Any] | None = None, *, entropy: MetricSpec | str = "entropy", registry: Any = None
) -> MetricFn:
    """The built entropy metric that picks the ``"auto"`` reference (same `bins` as the ranking metric);
    `entropy` is its spec (or name, looked up in `registry`)."""
    return resolve_metric(entropy, _entropy_options(metric_options), registry=registry)[1]


def reference_entropy_surrogate(metric_options: Mapping[str, Any] | None = None) -> MetricFn:
    """A differentiable stand-in for `reference_entropy` (the entropy metric's declared surrogate), for attacks
    that must keep a patch from becoming the ``"auto"`` reference."""
    spec = get_registry().get("metric", "entropy")
    surrogate = spec.build_surrogate(**_entropy_options(metric_options))
    if surrogate is None:
        raise UsageError(f"the {spec.name!r} metric registered here declares no differentiable surrogate")
    return surrogate


def lowest_entropy_index(
    samples: torch.Tensor,
    metric_options: Mapping[str, Any] | None = None,
    *,
    entropy_fn: MetricFn | None = None,
) -> torch.Tensor:
    """Index `(B,)` of each group's lowest-entropy sample of `samples` (B, M, ...); ties: lowest index.

    `entropy_fn`: a prebuilt `reference_entropy(metric_options)`, to skip the registry lookup per call."""
    b, m = samples.shape[:2]
    entropy = entropy_fn if entropy_fn is not None else reference_entropy(metric_options)
    with torch.no_grad():
        h = entropy(samples.detach().reshape(b * m, *samples.shape[2:])).reshape(b, m)
    return h.argmin(dim=1)  # the first minimum: ties go to the lowest index


def _reference_tensor(
    samples: torch.Tensor,
    reference: Reference,
    metric_options: Mapping[str, Any] | None,
    entropy_fn: MetricFn | None = None,
) -> torch.Tensor:
    """The reference: one sample `(C, h, w)` shared by all groups, or one per group `(B, 1, C, h, w)`."""
    b, m = samples.shape[:2]
    sample_shape = tuple(samples.shape[2:])
    if isinstance(reference, torch.Tensor):
        ref = reference.detach().to(device=samples.device, dtype=samples.dtype)
        if tuple(ref.shape) == sample_shape or (ref.dim() == len(sample_shape) + 1 and ref.shape[0] == 1):
            return ref.reshape(sample_shape)  # one reference shared by every group: broadcasts, no copy
        if ref.dim() == len(sample_shape) + 1 and ref.shape[0] == b and tuple(ref.shape[1:]) == sample_shape:
            return ref.unsqueeze(1)
        if (
            ref.dim() == len(sample_shape) + 2
            and ref.shape[:2] == (b, 1)
            and tuple(ref.shape[2:]) == sample_shape
        ):
            return ref
        raise TensorError(
            f"reference tensor of shape {tuple(ref.shape)} does not match samples of shape {sample_shape} "
            f"(give one sample {sample_shape} or one per group ({b}, *{sample_shape}))"
        )
    reference = check_reference(reference)
    if reference == "auto":
        index = lowest_entropy_index(samples, metric_options, entropy_fn=entropy_fn)
    else:
        if reference >= m:  # type: ignore[operator]
            raise ConfigError(
                f"reference index {reference} is out of range: there are only {m} samples per group"
            )
        return samples.detach()[:, int(reference) : int(reference) + 1]  # a view: no gather needed
    index = index.to(samples.device)
    if samples.is_contiguous():  # rows of the flat view: index_select copies whole rows (faster on CPU)
        flat = samples.detach().reshape(b * m, *sample_shape)
        rows = index + torch.arange(0, b * m, m, device=samples.device)
        return flat.index_select(0, rows).unsqueeze(1)
    return samples.detach()[torch.arange(b, device=samples.device), index].unsqueeze(1)


def score_groups(
    samples: torch.Tensor,
    spec: MetricSpec,
    metric_fn: MetricFn,
    *,
    reference: Reference = "auto",
    metric_options: Mapping[str, Any] | None = None,
    entropy_fn: MetricFn | None = None,
) -> torch.Tensor:
    """Scores `(B, M)` of `samples` `(B, M, C, h, w)` under a built metric (no gradient).

    `entropy_fn`: a prebuilt `reference_entropy(metric_options)` for the ``"auto"`` reference."""
    if not isinstance(samples, torch.Tensor) or samples.dim() < 3:
        raise TensorError(
            f"samples must be a tensor of shape (B, M, C, h, w), got {getattr(samples, 'shape', None)}"
        )
    b, m = samples.shape[:2]
    with torch.no_grad():
        flat = samples.detach().reshape(b * m, *samples.shape[2:])
        grouped = getattr(metric_fn, "grouped", None)
        if spec.distance:
            ref = _reference_tensor(samples, reference, metric_options, entropy_fn)
            if ref.dim() == samples.dim() and callable(grouped):  # per-group reference, broadcast
                scores = grouped(samples.detach(), ref)
                if isinstance(scores, torch.Tensor) and tuple(scores.shape) == (b, m):
                    scores = scores.reshape(b * m)
            elif ref.dim() == samples.dim():  # flat-only metric: one copy of the reference per sample
                scores = metric_fn(flat, ref.expand(b, m, *ref.shape[2:]).reshape(flat.shape))
            else:
                scores = metric_fn(flat, ref)
        else:
            scores = metric_fn(flat)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (b * m,):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise PluginError(f"metric {spec.name!r} returned scores of shape {got}, expected ({b * m},)")
    return scores.reshape(b, m)


def rank_groups(
    samples: torch.Tensor,
    metric: MetricSpec | str,
    *,
    reference: Reference = "auto",
    order: Order = "ascending",
    metric_options: Mapping[str, Any] | None = None,
    registry: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank the M samples of each of B groups (a metric name is looked up in `registry` when given).

    `samples` `(B, M, C, h, w)` in [0, 1]. Returns `(perm, scores)`: `perm` `(B, M)` long, where `perm[b, i]`
    is the index of the sample placed at rank i of group b; `scores` `(B, M)` are the metric values of the
    samples *in their original order* (so `scores.gather(1, perm)` is sorted). Neither carries gradient.
    """
    check_order(order)
    spec, metric_fn = resolve_metric(metric, metric_options, registry=registry)
    entropy_fn = reference_entropy(metric_options, registry=registry) if spec.distance and registry else None
    scores = score_groups(
        samples, spec, metric_fn, reference=reference, metric_options=metric_options, entropy_fn=entropy_fn
    )
    return sort_scores(scores, order, spec), scores


def rank_samples(
    x: torch.Tensor,
    metric: MetricSpec | str,
    *,
    reference: Reference = "auto",
    order: Order = "ascending",
    metric_options: Mapping[str, Any] | None = None,
    registry: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rank_groups` for one group: `x` `(M, C, h, w)` -> `(perm (M,), scores (M,))`."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise TensorError(f"x must be a tensor of shape (M, C, h, w), got {getattr(x, 'shape', None)}")
    perm, scores = rank_groups(
        x.unsqueeze(0), metric, reference=reference, order=order, metric_options=metric_options, registry=registry
    )
    return perm[0], scores[0]
