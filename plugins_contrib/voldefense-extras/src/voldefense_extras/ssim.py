"""SSIM (Wang et al. 2004, "Image quality assessment: from error visibility to structural similarity") as a
patch metric: the mean structural similarity of each sample to a reference.

Local statistics use a Gaussian window and "valid" positions only (no padding, so no invented border pixels).
Patches can be smaller than the window — a 4x4 patch grid is common — so the window shrinks to the largest odd
size that fits the patch; SSIM of a 1x1 window is still defined (luminance term only, contrast terms cancel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from voldefense.errors import ConfigError


def gaussian_window(size: int, sigma: float, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """A normalised ``(size, size)`` Gaussian window."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype)


class SSIM:
    """``ssim(x, reference) -> (M,)``: mean SSIM over channels and window positions, in [-1, 1].

    ``x`` is ``(M, C, h, w)`` in [0, ``data_range``]; ``reference`` is broadcastable to it (one reference
    patch ``(C, h, w)`` or ``(1, C, h, w)``, or one per sample). Identical inputs score exactly 1, so a larger
    score means "more like the reference" (the spec declares ``larger_is_simpler=True``).
    """

    def __init__(
        self,
        *,
        window_size: int = 7,
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        data_range: float = 1.0,
    ) -> None:
        if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
            raise ConfigError(f"ssim: window_size must be a positive odd integer, got {window_size!r}")
        if sigma <= 0 or data_range <= 0 or k1 <= 0 or k2 <= 0:
            raise ConfigError("ssim: sigma, k1, k2 and data_range must be positive")
        self.window_size = window_size
        self.sigma = float(sigma)
        self.c1 = (k1 * data_range) ** 2
        self.c2 = (k2 * data_range) ** 2

    def window_for(self, h: int, w: int) -> int:
        """The window side for ``h x w`` samples: the configured one, shrunk to the largest odd that fits."""
        size = min(self.window_size, h, w)
        return size if size % 2 == 1 else size - 1

    def __call__(self, x: Tensor, reference: Tensor | None = None) -> Tensor:
        if reference is None:
            raise ValueError("ssim is a distance metric: pass a reference broadcastable to x")
        if x.dim() != 4:
            raise ValueError(f"ssim expects samples of shape (M, C, h, w), got {tuple(x.shape)}")
        # Compute in at least float32: the variance terms are differences of close numbers.
        dtype = torch.promote_types(x.dtype, torch.float32)
        x = x.to(dtype)
        y = torch.broadcast_to(reference.to(device=x.device, dtype=dtype), x.shape)
        m, c, h, w = x.shape
        if m == 0:
            return x.new_zeros(0)
        size = self.window_for(h, w)
        window = gaussian_window(size, self.sigma, dtype=dtype).to(x.device).expand(c, 1, size, size)
        # One depthwise convolution over the five local moments stacked along the batch axis.
        stacked = torch.cat([x, y, x * x, y * y, x * y])
        mu_x, mu_y, e_xx, e_yy, e_xy = F.conv2d(stacked, window, groups=c).split(m)
        var_x = e_xx - mu_x**2
        var_y = e_yy - mu_y**2
        cov = e_xy - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + self.c1) * (2 * cov + self.c2)
        denominator = (mu_x**2 + mu_y**2 + self.c1) * (var_x + var_y + self.c2)
        return (numerator / denominator).flatten(1).mean(1)
