"""Shared, private helpers of the histogram metrics (entropy, mi, kl, joint_entropy).

Everything is vectorised over samples. The only Python loop is over *chunks* of samples in the dense counting
path, which exists to keep each chunk's count table small (cache-resident on CPU, bounded memory on GPU); the
number of iterations is ``M / chunk``, not ``M``.

Conventions (documented in docs/metrics.md):

- Intensities are pooled over all channels and pixels of a sample: a sample ``(C, h, w)`` is one bag of
  ``n = C*h*w`` values. A value ``v`` in [0, 1] falls in bin ``min(floor(v * bins), bins - 1)``; values
  outside [0, 1] are clamped first.
- Entropies are in bits.

Distance metrics work on *groups*: samples ``(G, M, n)`` against references ``(G or 1, M or 1, n)`` that
broadcast over them, so a per-image reference patch is never copied once per patch (`pair_flat` turns the
flat metric call into one group, `pair_groups` serves the metrics' ``grouped`` method used by the ranking).
No function here synchronises a GPU with the host (no ``.item()``, no data-dependent shapes; `torch.bincount`
is used on CPU only, since on CUDA it reads the codes' min and max back to the host).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator

import torch

from voldefense.errors import ArgumentTypeError, TensorError, UsageError
from voldefense.plugins.metrics._options import DEFAULT_BINS, check_bins  # noqa: F401 (re-exported)

_LN2 = math.log(2.0)


def check_samples(x: object, name: str = "x") -> torch.Tensor:
    """`x` must be a floating tensor `(M, ...)` with at least one value per sample."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor of shape (M, C, h, w), got {type(x).__name__}")
    if x.dim() < 2 or any(side == 0 for side in x.shape[1:]):
        raise TensorError(f"{name} must have shape (M, C, h, w) with non-empty samples, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TensorError(f"{name} must be a float tensor in [0, 1], not {x.dtype}; divide uint8 by 255")
    return x


def broadcast_reference(x: torch.Tensor, reference: object, metric: str) -> torch.Tensor:
    """The reference of a distance metric, broadcast to `x`'s shape (a view when possible)."""
    if reference is None:
        raise UsageError(f"metric {metric!r} is a distance metric: pass a reference sample")
    if not isinstance(reference, torch.Tensor):
        raise ArgumentTypeError(f"reference of metric {metric!r} must be a tensor, got {type(reference).__name__}")
    try:
        ref = torch.broadcast_to(reference, x.shape)
    except RuntimeError:
        raise TensorError(
            f"reference of shape {tuple(reference.shape)} does not broadcast to samples {tuple(x.shape)}"
        ) from None
    return ref.to(device=x.device, dtype=x.dtype)


def _compact(ref: torch.Tensor, lead: int) -> torch.Tensor:
    """Narrow each of the first `lead` axes that is broadcast (stride 0) to size 1: one copy of the reference
    per group, not per sample."""
    for axis in range(lead):
        if ref.shape[axis] > 1 and ref.stride(axis) == 0:
            ref = ref.narrow(axis, 0, 1)
    return ref


def pair_flat(x: torch.Tensor, reference: object, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat call's samples `(M, ...)` and reference as one group: `(1, M, n)` and `(1, 1 or M, n)`."""
    ref = _compact(broadcast_reference(x, reference, metric), 1)
    n = x[0].numel() if x.shape[0] else math.prod(x.shape[1:])
    return x.reshape(1, x.shape[0], n), ref.reshape(1, ref.shape[0], n)


def check_groups(x: object, name: str = "x") -> torch.Tensor:
    """`x` must be a floating tensor `(G, M, C, h, w)` (groups of samples) with non-empty samples."""
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        raise TensorError(
            f"{name} must be a tensor of shape (G, M, C, h, w) (groups of samples), got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    check_samples(x.flatten(0, 1) if x.shape[0] * x.shape[1] else x[0], name)
    return x


def pair_groups(x: torch.Tensor, reference: object, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples `(G, M, ...)` and a reference broadcastable to them (e.g. one per group `(G, 1, ...)`) as
    `(G, M, n)` and `(G or 1, M or 1, n)`, without expanding the reference."""
    ref = _compact(broadcast_reference(x, reference, metric), 2)
    n = math.prod(x.shape[2:])
    return x.reshape(x.shape[0], x.shape[1], n), ref.reshape(ref.shape[0], ref.shape[1], n)


def score_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def quantize(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin indices `(M, n)` (int32) of every value of each sample, channels pooled."""
    flat = x.detach().flatten(1)
    # Clamp before the integer cast: truncation toward zero is then floor, and 1.0 lands in the last bin.
    # int32, not int64: half the memory traffic, and bincount accepts it (measured ~30% faster overall).
    return (flat * bins).clamp_(0, bins - 1).to(torch.int32)


_BUDGET_CPU = 1 << 16
_BUDGET_CUDA = 1 << 24


def row_chunks(m: int, cells_per_row: int, device: torch.device) -> Iterator[slice]:
    """Slices of at most `budget / cells_per_row` rows covering range(m).

    On CPU a chunk's working set (values, codes, a count table of ~64k cells) stays in cache, which measured
    3-10x faster than processing all rows at once; on GPU kernel launches dominate, so chunks are large but
    still bounded (16M cells = 64 MB of int32 codes or 128 MB of counts).
    """
    budget = _BUDGET_CUDA if device.type == "cuda" else _BUDGET_CPU
    rows = max(1, budget // max(1, cells_per_row))
    for start in range(0, m, rows):
        yield slice(start, min(m, start + rows))


def blocks(g: int, m: int, cells_per_row: int, device: torch.device) -> Iterator[tuple[slice, slice]]:
    """`(groups, samples)` slices covering a `(g, m)` grid, each of at most the `row_chunks` budget: whole
    groups per block when a group fits, else slices of one group's samples."""
    if g * m == 0:
        return
    budget = _BUDGET_CUDA if device.type == "cuda" else _BUDGET_CPU
    rows = max(1, budget // max(1, cells_per_row))
    if rows >= m:
        per = rows // m
        for g0 in range(0, g, per):
            yield slice(g0, min(g, g0 + per)), slice(0, m)
        return
    for g0 in range(g):
        for m0 in range(0, m, rows):
            yield slice(g0, g0 + 1), slice(m0, min(m, m0 + rows))


def _ref_block(ref: torch.Tensor, groups: slice, samples: slice) -> torch.Tensor:
    """The reference rows facing `x[groups, samples]` (broadcast axes of size 1 stay whole)."""
    return ref[groups if ref.shape[0] > 1 else slice(None), samples if ref.shape[1] > 1 else slice(None)]


_SERIAL_NUMEL = 32768
"""ATen's grain size: element-wise ops and reductions on fewer elements run on the calling thread anyway."""


@contextlib.contextmanager
def cpu_single_thread(device: torch.device, numel: int | None = None) -> Iterator[None]:
    """Run the chunk loops with one intra-op thread on CPU.

    Each chunk is cache-sized, so intra-op threading gains little on it; worse, on a machine whose other cores
    are busy, OpenMP's barrier after every small op waits for a descheduled thread: with 2 threads on a loaded
    2-core machine, MI over 40,000 patches measured 2.4-22 s instead of 0.6 s single-threaded.

    Only on CPU, and only when the work is big enough to be threaded at all (`numel` above ATen's grain
    size): small calls (a few images, the per-batch volumizer case) never touch the process-wide setting.
    `torch.set_num_threads` sets OpenMP's per-thread limit (other Python threads keep theirs) but MKL's is
    global, so this is restored right after the loop; it stays because no thread-safe knob gives the same
    speed on a loaded machine (one big op per step instead of chunks is 3-10x slower, see `row_chunks`).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or (numel is not None and numel <= _SERIAL_NUMEL):
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pixel_distance(
    x: torch.Tensor,
    ref: torch.Tensor,
    kind: str,
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-sample ``mean (x - r)^2`` (kind "mse") or ``max |x - r|`` ("max_abs") of `x` `(G, M, n)` against
    `ref` `(G or 1, M or 1, n)`, broadcast (never expanded), then `post` (elementwise, e.g. MSE -> dB).
    Scores `(G, M)`; differentiable.

    Cache-sized blocks on CPU: one pass over memory instead of one per elementwise op (measured ~2x). `post`
    runs inside the loop on each block's scores: small ops that stay on one thread, where the same ops on all
    scores at once would be threaded and, on a loaded machine, wait at OpenMP barriers (PSNR measured 30%
    slower that way).
    """
    g, m, n = x.shape
    dtype = score_dtype(x)
    parts = list(blocks(g, m, n, x.device))
    out = None if len(parts) == 1 else torch.empty(g, m, device=x.device, dtype=dtype)
    with cpu_single_thread(x.device, x.numel()):
        for groups, samples in parts:
            d = x[groups, samples] - _ref_block(ref, groups, samples)
            # In place when no gradient is needed: the difference is a fresh temporary.
            if kind == "mse":
                score = (d.square() if d.requires_grad else d.square_()).mean(dim=-1)
            else:
                score = (d.abs() if d.requires_grad else d.abs_()).amax(dim=-1)
            score = score.to(dtype)
            if post is not None:
                score = post(score)
            if out is None:
                return score
            out[groups, samples] = score
    return torch.empty(g, m, device=x.device, dtype=dtype) if out is None else out


@functools.lru_cache(maxsize=64)
def _offsets(rows: int, cells: int, device: torch.device) -> torch.Tensor:
    """Row offsets `(rows, 1)` of the flat count table; cached (read-only), since every batch of the same
    size needs the same ones: two kernels fewer per count on a GPU."""
    dtype = torch.int32 if rows * cells < 2**31 else torch.int64
    return torch.arange(rows, device=device, dtype=dtype).mul_(cells).unsqueeze(1)


def _counts(
    codes: torch.Tensor, cells: int, dtype: torch.dtype, *, sync_free: bool | None = None
) -> torch.Tensor:
    """Counts `(m, cells)` of each row of `codes` `(m, n)` (values in [0, cells)), one flat offset count.

    On CPU by `torch.bincount` (the fastest there); on other devices (`sync_free`, default: not CPU) by
    `index_add_` of ones into a table of known size, because CUDA's bincount reads min and max back to the
    host. Counts are small integers, exact in float, so both give the same table.
    """
    m = codes.shape[0]
    offsets = _offsets(m, cells, codes.device)
    flat = (codes.to(offsets.dtype) + offsets).reshape(-1)
    if not (codes.device.type != "cpu" if sync_free is None else sync_free):
        return torch.bincount(flat, minlength=m * cells).view(m, cells).to(dtype)
    counts = torch.zeros(m * cells, device=codes.device, dtype=dtype)
    counts.index_add_(0, flat, torch.ones((), device=codes.device, dtype=dtype).expand(flat.numel()))
    return counts.view(m, cells)


def _sum_clogc_counts(counts: torch.Tensor, dims: int | tuple[int, ...] = 1) -> torch.Tensor:
    # c * log(max(c, 1)) is c log c with 0 log 0 = 0, and cheaper than xlogy.
    return (counts * counts.clamp(min=1).log()).sum(dims)


def _sum_clogc_sorted(codes: torch.Tensor, dtype: torch.dtype, cells: int | None = None) -> torch.Tensor:
    """`sum_k c_k log c_k` per row without a count table: sort each row, then use the telescoping identity
    ``c log c = sum_{j=1..c} g(j)`` with ``g(j) = j log j - (j-1) log(j-1)``, where j is an element's 1-based
    position inside its run of equal codes (found with one `cummax`). Memory O(M n) whatever the code
    range. `cells` bounds the codes (< cells); pass it to avoid reading their max back from the device."""
    m, n = codes.shape
    top = (cells - 1) if cells is not None else (int(codes.max()) if codes.numel() else 0)
    # Smaller integer types sort markedly faster; shift into int16's signed range when the codes fit.
    keys = (codes - 32768).to(torch.int16) if top < 65536 else codes
    ordered = torch.sort(keys, dim=1).values
    idx = torch.arange(n, device=codes.device).expand(m, n)
    is_start = torch.ones(m, n, dtype=torch.bool, device=codes.device)
    is_start[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run_start = torch.where(is_start, idx, torch.zeros_like(idx)).cummax(dim=1).values
    j = torch.arange(n + 1, device=codes.device, dtype=torch.float64)
    table = torch.xlogy(j, j)
    increments = (table[1:] - table[:-1]).to(dtype)  # g(j) at index j - 1
    return increments[idx - run_start].sum(1)


def dense_is_cheaper(cells: int, n: int) -> bool:
    """Dense counting costs ~cells per row, sorting ~n log n: pick dense while the table is under 8n cells."""
    return cells <= 8 * n


def entropy_from_sum(s: torch.Tensor, n: int) -> torch.Tensor:
    """Shannon entropy in bits from ``s = sum_k c_k log c_k`` over n values: ``log n - s / n``."""
    return (math.log(n) - s / n) / _LN2


def histograms(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Intensity counts `(M, bins)` of each sample of `x` `(M, ...)`, channels pooled."""
    m, dtype = x.shape[0], score_dtype(x)
    out = torch.empty(m, bins, device=x.device, dtype=dtype)
    with cpu_single_thread(x.device, x.numel()):
        for rows in row_chunks(m, max(bins, x[0].numel() if m else 1), x.device):
            out[rows] = _counts(quantize(x[rows], bins), bins, dtype)
    return out


def entropy(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Entropy in bits `(M,)` of each sample's intensity histogram."""
    m, dtype = x.shape[0], score_dtype(x)
    if m == 0:
        return torch.empty(0, device=x.device, dtype=dtype)
    n = x[0].numel()
    chunks = list(row_chunks(m, max(bins, n), x.device))
    out = torch.empty(m if len(chunks) > 1 else 0, device=x.device, dtype=dtype)
    with cpu_single_thread(x.device, x.numel()):
        for rows in chunks:
            codes = quantize(x[rows], bins)
            if dense_is_cheaper(bins, n):
                sums = _sum_clogc_counts(_counts(codes, bins, dtype))
            else:
                sums = _sum_clogc_sorted(codes, dtype, bins)
            # Per chunk (elementwise, same values): small single-threaded ops, see `pixel_distance`.
            if len(chunks) == 1:  # one chunk (small batches, GPU): no copy into `out`
                return entropy_from_sum(sums, n)
            out[rows] = entropy_from_sum(sums, n)
    return out


def joint_entropies(
    x: torch.Tensor, ref: torch.Tensor, bins: int, *, marginals: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(H(x, r), H(x), H(r))`` in bits `(G, M)` for position-paired values of `x` `(G, M, n)` and `ref`
    `(G or 1, M or 1, n)` (broadcast, e.g. one reference per group).

    The joint histogram has ``bins**2`` cells; it is never materialised for all samples at once: small tables
    are counted block by block (marginals summed from the joint counts), large ones by sorting the joint codes
    of each row (`_sum_clogc_sorted`), so memory stays O(M n) even for 256 bins (65,536 cells). Each block's
    reference rows are quantised once, not once per sample. With `marginals=False` the last two entries are
    empty.
    """
    g, m, n = x.shape
    dtype = score_dtype(x)
    cells = bins * bins
    dense = dense_is_cheaper(cells, n)
    parts = list(blocks(g, m, max(cells, n) if dense else n, x.device))
    # Outputs are filled block by block; a single block returns its results directly (no copies).
    rows_out = (g, m) if len(parts) != 1 else (0,)
    joint = torch.empty(rows_out, device=x.device, dtype=dtype)
    h_x = torch.empty(rows_out if marginals else (0,), device=x.device, dtype=dtype)
    h_r = torch.empty_like(h_x)
    if g * m == 0:
        return joint, h_x, h_r
    with cpu_single_thread(x.device, x.numel()):
        for groups, samples in parts:
            block = x[groups, samples]
            a = quantize(block.flatten(0, 1), bins).view(block.shape)
            r = _ref_block(ref, groups, samples)
            b = quantize(r.flatten(0, 1), bins).view(*r.shape[:2], n)
            codes = (a * bins + b).flatten(0, 1)  # b broadcasts over the samples of its group
            rows = a.shape[:2]
            if dense:
                counts = _counts(codes, cells, dtype).view(-1, bins, bins)
                sums = [_sum_clogc_counts(counts, (1, 2)).view(rows)]
                if marginals:
                    sums.append(_sum_clogc_counts(counts.sum(2)).view(rows))
                    sums.append(_sum_clogc_counts(counts.sum(1)).view(rows))
            else:
                sums = [_sum_clogc_sorted(codes, dtype, cells).view(rows)]
                if marginals:
                    sums.append(_sum_clogc_counts(_counts(a.flatten(0, 1), bins, dtype)).view(rows))
                    # Counted on the reference rows only, broadcast over their samples.
                    sums.append(_sum_clogc_counts(_counts(b.flatten(0, 1), bins, dtype)).view(b.shape[:2]))
            if len(parts) == 1:  # one block (small batches, GPU): no copies into the outputs
                if marginals:
                    return tuple(entropy_from_sum(v.expand(g, m), n) for v in sums)  # type: ignore[return-value]
                return entropy_from_sum(sums[0], n), h_x, h_r
            for target, value in zip((joint, h_x, h_r), sums, strict=False):
                target[groups, samples] = value
    return entropy_from_sum(joint, n), entropy_from_sum(h_x, n), entropy_from_sum(h_r, n)
