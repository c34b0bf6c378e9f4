"""PatchCleanser's R-covering mask sets (Xiang, Mahloujifar & Mittal, USENIX Security 2022, Sec. 3.3).

Along an axis of n pixels, masks of m pixels start every s pixels (0, s, 2s, …, plus one flush with the far
edge). A patch of p pixels starting at u lies inside the mask starting at v iff ``u - (m - p) <= v <= u``, so
starts s apart cover every patch position when ``m >= p + s - 1``. The paper's formula: for ``k`` masks per axis
the stride is ``s = ceil((n - p + 1) / k)`` and the mask size ``m = p + s - 1``. Square masks of the two axes'
sizes then cover every square patch of side p anywhere in the image (the set is "R-covering" for p×p patches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from voldefense.defenses.lgs import window_starts
from voldefense.errors import ConfigError


def covered_length(length: int, mask: int, starts: list[int]) -> int:
    """The longest p such that every interval of p pixels inside ``[0, length)`` lies inside one of the masks
    ``[v, v + mask)`` (exact, by enumeration); 0 if not even single pixels are all covered."""
    for p in range(mask, 0, -1):
        if all(any(v <= u and u + p <= v + mask for v in starts) for u in range(length - p + 1)):
            return p
    return 0


@dataclass(frozen=True)
class AxisMasks:
    length: int
    mask: int
    stride: int
    starts: tuple[int, ...]
    covered: int


def axis_masks(
    length: int, patch: int, masks_per_axis: int, stride: int | None, mask: int | None, axis: str
) -> AxisMasks:
    """The masks along one axis for patches of `patch` pixels; refuses (one line) what cannot be certified."""
    if patch > length:
        raise ConfigError(
            f"patch_cleanser: a {patch}-pixel patch does not fit in the image {axis} of {length}; use a smaller "
            "patch_area"
        )
    s = stride if stride is not None else math.ceil((length - patch + 1) / masks_per_axis)
    m = mask if mask is not None else patch + s - 1
    if m >= length:
        raise ConfigError(
            f"patch_cleanser: masks of {m} pixels (patch {patch} + stride {s} - 1) cover the whole image {axis} "
            f"({length} px), leaving nothing to classify; use more masks_per_axis (a smaller stride) or a smaller "
            "patch_area"
        )
    starts = window_starts(length, m, s)
    covered = covered_length(length, m, starts)
    if covered < patch:
        raise ConfigError(
            f"patch_cleanser: masks of {m} pixels every {s} cover patches of at most {covered} pixels along the "
            f"image {axis}, not the patch_area's {patch}; use mask_size >= {patch + s - 1} or a smaller mask_stride"
        )
    return AxisMasks(length, m, s, tuple(starts), covered)


@dataclass(frozen=True)
class MaskSet:
    """The masks ``(M, 1, H, W)`` (1 = kept, 0 = masked) of the rows × columns grid of mask positions, and the
    largest square patch side every placement of which one mask covers."""

    rows: AxisMasks
    cols: AxisMasks

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def covered_side(self) -> int:
        return min(self.rows.covered, self.cols.covered)

    def masks(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        h, w = self.rows.length, self.cols.length
        out = torch.ones(self.count, 1, h, w, dtype=dtype, device=device)
        i = 0
        for top in self.rows.starts:
            for left in self.cols.starts:
                out[i, :, top : top + self.rows.mask, left : left + self.cols.mask] = 0
                i += 1
        return out

    def describe(self) -> dict[str, object]:
        return {
            "masks": self.count,
            "mask_size": [self.rows.mask, self.cols.mask],
            "mask_stride": [self.rows.stride, self.cols.stride],
            "covered_square_side": self.covered_side,
        }


def build_mask_set(
    image_size: tuple[int, int],
    patch_side: int,
    *,
    masks_per_axis: int = 6,
    stride: int | None = None,
    mask_size: int | None = None,
) -> MaskSet:
    """The mask set for square patches of `patch_side` pixels (stride and size per axis from the paper's
    formula unless given)."""
    h, w = image_size
    rows = axis_masks(h, patch_side, masks_per_axis, stride, mask_size, "height")
    cols = axis_masks(w, patch_side, masks_per_axis, stride, mask_size, "width")
    return MaskSet(rows, cols)
