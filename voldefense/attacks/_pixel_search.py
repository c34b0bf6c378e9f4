"""Shared machinery of the few-pixel attacks (`pixel_batched`, `pixel_exhaustive`, `pixel_search`).

Private: the plugins are the public interface. What lives here:

- `uniform`: counter-based random numbers. Every random draw of an image is a hash of (seed, image index,
  generation, stream, element), so an image's search does not depend on which other images are in the batch or
  still active, on the chunk size, or on the device — the attacks are deterministic given the seed.
- `paint_pixels`: write N (row, col, colour) triples into copies of images, deterministically when two triples
  hit the same location (the later triple wins), so at most N distinct locations ever change.
- `paint_corner_candidates`: one-pixel candidates numbered ``location * 2**C + corner``.
- `QueryModel`: evaluates candidate images in chunks and counts the forward passes of each source image.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from voldefense.errors import ConfigError, DataError, UsageError

_MASK32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' "lowbias32") on int64 tensors holding values in [0, 2**32).

    int64 products wrap in two's complement, and masking keeps the exact low 32 bits, so CPU and CUDA agree.
    """
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def uniform(seed: int, image_ids: torch.Tensor, generation: int, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform floats in [0, 1) of shape ``(len(image_ids), *shape)``, on ``image_ids``' device.

    Row a depends only on (seed, image_ids[a], generation, stream): the same image gets the same numbers
    whatever else is in the batch.
    """
    device = image_ids.device
    base = _hash32(torch.full((), seed & _MASK32, dtype=torch.int64, device=device) ^ (stream * 0x9E3779B9))
    base = _hash32(base ^ (generation & _MASK32))
    per_image = _hash32(base ^ image_ids.to(torch.int64))
    count = 1
    for dim in shape:
        count *= dim
    elements = _hash32(torch.arange(count, dtype=torch.int64, device=device) * 0x85EBCA6B + 0x27D4EB2F)
    bits = _hash32(per_image[:, None] ^ elements[None, :])
    # 24 bits fit a float32 mantissa exactly, so the result is strictly below 1.
    return ((bits >> 8).to(torch.float32) / float(1 << 24)).reshape(len(image_ids), *shape)


def colour_corners(channels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 2**channels corners of the colour cube, ``(2**channels, channels)`` in {0, 1}, black first."""
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=channels)), device=device)


def paint_pixels(base: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Copies of ``base`` (M, C, H, W) with pixel (rows[m, j], cols[m, j]) set to colours[m, j] (M, N, C).

    When several triples of a candidate hit the same location the last one wins; resolving that before the
    write keeps the result deterministic on every device (a plain scatter with duplicate indices is not).
    """
    m, c, h, w = base.shape
    n = rows.shape[1]
    loc = rows.long() * w + cols.long()  # (M, N)
    if n > 1:
        order = torch.arange(n, device=base.device).expand(m, n)
        last = torch.full((m, h * w), -1, dtype=torch.long, device=base.device)
        last.scatter_reduce_(1, loc, order, reduce="amax")
        winner = last.gather(1, loc)  # (M, N): index of the triple whose colour this location gets
        colours = colours.gather(1, winner[:, :, None].expand(-1, -1, c))
    out = base.reshape(m, c, h * w).clone()
    out.scatter_(2, loc[:, None, :].expand(-1, c, -1), colours.transpose(1, 2).to(out.dtype))
    return out.reshape(m, c, h, w)


def paint_corner_candidates(
    base: torch.Tensor, cand: torch.Tensor, corners: torch.Tensor, width: int
) -> torch.Tensor:
    """One-pixel candidates ``cand = location * len(corners) + corner index`` painted into copies of `base`."""
    loc, colour = cand // corners.shape[0], cand % corners.shape[0]
    return paint_pixels(base, (loc // width)[:, None], (loc % width)[:, None], corners[colour][:, None])


def check_batch(images: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    """Reject inputs that break the attack contract with a one-line message."""
    if images.dim() != 4:
        raise DataError(f"{what}: images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise DataError(f"{what}: images must be float in [0, 1], got {images.dtype}; divide uint8 by 255")
    if labels.shape != (images.shape[0],):
        raise DataError(
            f"{what}: labels must have shape ({images.shape[0]},) like the images, got {tuple(labels.shape)}"
        )
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise DataError(f"{what}: images must lie in [0, 1]; rescale them (e.g. divide uint8 by 255)")


def pixel_count(size: float, height: int, width: int, what: str) -> int:
    """The attack size as a whole number of pixels in 1..H*W, or a `ConfigError`."""
    if isinstance(size, bool) or not isinstance(size, (int, float)) or float(size) != int(size):
        raise ConfigError(f"{what}: size must be a whole number of pixels, got {size!r}")
    n = int(size)
    if not 1 <= n <= height * width:
        raise ConfigError(f"{what}: size must be between 1 and {height * width} pixels (the image), got {n}")
    return n


def int_option(what: str, name: str, value: object, minimum: int, hint: str = "") -> None:
    """Raise a `ConfigError` unless `value` is an integer >= `minimum` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        why = f" ({hint})" if hint else ""
        raise ConfigError(f"{what}: {name} must be an integer >= {minimum}{why}, got {value!r}")


def number_option(what: str, name: str, value: object, low: float, high: float) -> None:
    """Raise a `ConfigError` unless `value` is a number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{what}: {name} must be a number in [{low:g}, {high:g}], got {value!r}")


def choice_option(what: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a `ConfigError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(f"{what}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """Where the model's parameters live (the images' device for parameter-free models)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return fallback


class QueryModel:
    """Chunked evaluation of candidate images that counts one query per candidate forward pass.

    ``evaluate(make, owners)`` builds candidates chunk by chunk with ``make(start, stop)`` (so at most
    ``batch_size`` candidate images exist at a time), and returns the fitness and the predicted class of each;
    ``owners`` says which source image each candidate belongs to, for the query count. The fitness, lower for
    a stronger candidate, is the true-class probability, or with ``fitness="margin"`` the logit margin
    ``logit[label] - max other logit`` (negative exactly when the candidate is misclassified).
    """

    def __init__(
        self, model: nn.Module, labels: torch.Tensor, batch_size: int, fitness: str = "probability"
    ):
        self.model = model
        self.labels = labels
        self.batch_size = batch_size
        self.fitness = fitness
        self.queries = torch.zeros(labels.shape[0], dtype=torch.long, device=labels.device)

    @torch.no_grad()
    def evaluate(
        self, make: Callable[[int, int], torch.Tensor], owners: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        total = owners.shape[0]
        probs, preds = [], []
        for start in range(0, total, self.batch_size):
            stop = min(start + self.batch_size, total)
            logits = self.model(make(start, stop))
            if logits.dim() != 2 or logits.shape[0] != stop - start:
                raise UsageError(
                    "the attacked model must map (B, C, H, W) images to (B, K) logits; "
                    f"it returned shape {tuple(logits.shape)}"
                )
            logits = logits.float()
            label = self.labels[owners[start:stop]]
            if self.fitness == "margin":
                true = logits.gather(1, label[:, None])[:, 0]
                probs.append(true - logits.scatter(1, label[:, None], -torch.inf).amax(dim=1))
            else:
                probs.append(torch.softmax(logits, dim=1).gather(1, label[:, None])[:, 0])
            preds.append(logits.argmax(dim=1))
        self.queries.index_add_(0, owners, torch.ones_like(owners))
        if not probs:
            empty = owners.new_zeros(0)
            return empty.float(), empty
        return torch.cat(probs), torch.cat(preds)
