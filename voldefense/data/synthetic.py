"""The built-in `synthetic` dataset: shapes and textures on cluttered, textured backgrounds, made offline.

Each image shows one object whose *category* is the class: a shape (circle, square, triangle, cross, ring,
star) or a striped/checkered texture patch (horizontal, vertical, diagonal stripes, checkerboard). Everything
a model could use as a shortcut is random and independent of the class: the object's colour, size, position
and rotation, the background's colour and texture, pixel noise, and distractor clutter (small blobs, a thin
line) drawn over the scene. Colour statistics therefore say nothing about the class; a model has to learn
spatial features (edges, corners, curvature, oriented periodic patterns) — the kind of features a localized
attack perturbs, which is what makes the built-in task useful for exercising the defense.

Two layouts (option `layout`). ``"scene"``: one object in one scene; the object straddles the 16x16 quadrants,
so a quadrant alone often shows only part of it. ``"tiled"``: a 2x2 grid of independent half-size scenes of the
same class (each with its own object, colours, clutter and position), so the class is recognisable locally — in
every quadrant on its own — as well as globally, like a CIFAR object that fills the frame. The volumized g
classifies 16x16 patches; on ``"scene"`` images it loses far more to that than it does on CIFAR (a 2D model on
rank-permuted quadrants loses 12 points there vs 7 on CIFAR), so the quickstart uses ``"tiled"``, which does not
exaggerate g's gap.

Rendering is vectorised over a chunk of images with signed distance functions (anti-aliased edges), so ten
thousand 32x32 images take a few seconds. Images are generated in fixed-size chunks, each with its own random
stream derived from `(seed, split, chunk index)`: image `i` does not depend on the requested size, so a larger
`train_size` extends the set instead of reshuffling it, and the train and test splits are independent draws.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from voldefense.data.arrays import ArrayDataset, check_int, check_split
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)

CLASSES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "horizontal_stripes",
    "vertical_stripes",
    "diagonal_stripes",
    "checkerboard",
    "star",
)
_STRIPES = {5: 0.0, 6: math.pi / 2}  # class -> stripe direction (diagonal: either diagonal, chosen per image)
_PATTERNED = (5, 6, 7, 8)
_CHUNK = 256
_SPLIT_STREAM = {"train": 0, "test": 1}
LAYOUTS = ("scene", "tiled")


def load_synthetic(
    split: str,
    *,
    train_size: int = 5000,
    test_size: int = 1000,
    seed: int = 0,
    image_size: int = 32,
    num_classes: int = 10,
    layout: str = "scene",
) -> ArrayDataset:
    """Generate the `split` of the synthetic shapes dataset (uint8 RGB, classes about equally frequent).

    `num_classes` keeps the first K categories of `CLASSES` (fewer classes make tiny tests faster);
    `image_size` scales the whole scene (the default 32 matches CIFAR). `layout`: ``"scene"`` (one object) or
    ``"tiled"`` (a 2x2 grid of half-size scenes of the class; see the module docstring).
    """
    check_split(split)
    sizes = {
        "train": check_int("train_size", train_size, minimum=1),
        "test": check_int("test_size", test_size, minimum=1),
    }
    size = sizes[split]
    seed = check_int("seed", seed, minimum=0)
    image_size = check_int("image_size", image_size, minimum=16, maximum=512)
    num_classes = check_int("num_classes", num_classes, minimum=2, maximum=len(CLASSES))
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, not {layout!r}")
    if layout == "tiled" and (image_size % 2 or image_size < 32):
        raise ConfigError(f"layout 'tiled' needs an even image_size >= 32 (two 16-pixel tiles), not {image_size}")
    images, labels = generate(
        size, seed=seed, split=split, image_size=image_size, num_classes=num_classes, layout=layout
    )
    logger.debug("generated %d synthetic %s images", size, split)
    return ArrayDataset(images, labels, list(CLASSES[:num_classes]))


def generate(
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    image_size: int = 32,
    num_classes: int = 10,
    layout: str = "scene",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` images as uint8 `(n, 3, S, S)` and int64 labels `(n,)`, deterministic in all arguments."""
    images, labels = [], []
    for chunk, start in enumerate(range(0, n, _CHUNK)):
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], chunk])
        # Always render the whole chunk and keep what is needed: every random draw then has the same shape
        # whatever `n` is, which is what makes image i independent of the requested size. The label cycle
        # continues across chunks so that class counts stay within one of each other over full chunks.
        y = rng.permutation((np.arange(_CHUNK) + chunk * _CHUNK) % num_classes)
        keep = min(_CHUNK, n - start)
        images.append((_render(rng, y, image_size) if layout == "scene" else _tiled(rng, y, image_size))[:keep])
        labels.append(y[:keep])
    x = np.concatenate(images) if images else np.zeros((0, 3, image_size, image_size), np.float32)
    y = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return (
        torch.from_numpy(np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)),
        torch.from_numpy(y.astype(np.int64)),
    )


def _tiled(rng: np.random.Generator, y: np.ndarray, size: int) -> np.ndarray:
    """A 2x2 grid of independent half-size scenes, all four of class y[i], per image."""
    half = size // 2
    tiles = _render(rng, np.repeat(y, 4), half).reshape(len(y), 2, 2, 3, half, half)
    return tiles.transpose(0, 3, 1, 4, 2, 5).reshape(len(y), 3, size, size)


def _upsample(noise: np.ndarray, size: int) -> np.ndarray:
    return F.interpolate(
        torch.from_numpy(noise), size=(size, size), mode="bicubic", align_corners=False
    ).numpy()


def _luminance(colour: np.ndarray) -> np.ndarray:
    return colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased pixel coverage from the signed distance (pixels) of its centre to the shape's edge."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _render(rng: np.random.Generator, y: np.ndarray, size: int) -> np.ndarray:
    n = y.shape[0]
    scale = size / 32.0
    f32 = np.float32

    # Background: smooth colour field at two scales, a faint grating (so stripes alone are not "the object"),
    # and pixel noise. Its colour is random per image, like the object's.
    base = rng.random((n, 3, 1, 1), dtype=f32)
    coarse = rng.random((n, 3, 4, 4), dtype=f32) - 0.5
    fine = rng.random((n, 3, 8, 8), dtype=f32) - 0.5
    amp = rng.uniform(0.2, 0.6, (n, 1, 1, 1)).astype(f32)
    bg = base * 0.6 + 0.2 + amp * (_upsample(coarse, size) + 0.5 * _upsample(fine, size))

    grid = np.arange(size, dtype=f32) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (S, S), pixel centres
    yy, xx = yy[None], xx[None]
    g_angle = rng.uniform(0, math.pi, (n, 1, 1)).astype(f32)
    g_period = rng.uniform(3, 9, (n, 1, 1)).astype(f32) * scale
    grating = np.sin(2 * math.pi * (np.cos(g_angle) * xx + np.sin(g_angle) * yy) / g_period)
    bg = bg + (rng.uniform(0, 0.08, (n, 1, 1)).astype(f32) * grating)[:, None]
    bg = np.clip(bg, 0, 1)

    # Object geometry: centre, half-size s and rotation, all in pixels / radians, independent of the class.
    s = rng.uniform(7.0, 12.0, (n, 1, 1)).astype(f32) * scale
    margin = s * 0.85  # mostly inside the frame: a cut-off square can be indistinguishable from a circle
    cx = margin + rng.random((n, 1, 1), dtype=f32) * (size - 2 * margin)
    cy = margin + rng.random((n, 1, 1), dtype=f32) * (size - 2 * margin)
    theta = rng.uniform(0, 2 * math.pi, (n, 1, 1)).astype(f32)
    dx, dy = xx - cx, yy - cy
    u = np.cos(theta) * dx + np.sin(theta) * dy
    v = -np.sin(theta) * dx + np.cos(theta) * dy
    r = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)

    sd = np.empty((n, size, size), f32)
    pattern = np.ones((n, size, size), f32)  # 1 = primary colour, 0 = secondary colour
    for k in range(len(CLASSES)):
        m = y == k
        if not m.any():
            continue
        uk, vk, rk, sk = u[m], v[m], r[m], s[m]
        if k == 0:
            d = rk - sk
        elif k == 1:
            d = np.maximum(np.abs(uk), np.abs(vk)) - 0.8 * sk
        elif k == 2:  # equilateral triangle, circumradius 1.2 s: inside all three edge half-planes
            d = (
                np.max(
                    [
                        np.cos(a) * uk + np.sin(a) * vk
                        for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)
                    ],
                    axis=0,
                )
                - 0.6 * sk
            )
        elif k == 3:
            w = 0.3 * sk
            d = np.minimum(
                np.maximum(np.abs(uk) - sk, np.abs(vk) - w), np.maximum(np.abs(vk) - sk, np.abs(uk) - w)
            )
        elif k == 4:
            d = np.abs(rk - 0.72 * sk) - 0.24 * sk
        elif k == 9:
            d = rk - sk * (0.4 + 0.6 * ((1 + np.cos(5 * phi[m])) / 2) ** 1.5)  # five pointed arms
        else:
            # Texture classes: a disc or a square region (chosen per image, so the outline carries no class
            # information) filled with a two-colour periodic pattern. Stripe orientation is fixed relative to
            # the image (up to a small jitter): it *is* the class, so these images are not rotated.
            disc = rng.random((int(m.sum()), 1, 1)) < 0.5
            d = np.where(disc, rk - sk, np.maximum(np.abs(uk), np.abs(vk)) - 0.8 * sk)
            period = rng.uniform(4.0, 6.0, (int(m.sum()), 1, 1)).astype(f32) * scale
            phase = rng.uniform(0, 2 * math.pi, (int(m.sum()), 1, 1)).astype(f32)
            dxk, dyk = dx[m], dy[m]
            if k == 8:
                wave = np.sin(2 * math.pi * uk / period + phase) * np.sin(2 * math.pi * vk / period)
            else:
                if k == 7:
                    direction = np.where(rng.random((int(m.sum()), 1, 1)) < 0.5, math.pi / 4, -math.pi / 4)
                else:
                    direction = np.full((int(m.sum()), 1, 1), _STRIPES[k])
                direction = direction + rng.uniform(-0.15, 0.15, direction.shape)
                # Coordinate across the stripes: stripes run along `direction`.
                across = -np.sin(direction) * dxk + np.cos(direction) * dyk
                wave = np.sin(2 * math.pi * across / period + phase)
            pattern[m] = np.clip(wave * 3.0 + 0.5, 0.0, 1.0)
        sd[m] = d
    alpha = _coverage(sd)[:, None]  # (n, 1, S, S)

    # Colours: random hue, but the object's luminance is kept at least 0.3 away from the background's so that
    # every image is solvable (a camouflaged object would only add label noise).
    bg_lum = _luminance(bg.mean(axis=(2, 3)))  # (n,)
    room_low, room_high = np.maximum(bg_lum - 0.3, 0), np.maximum(0.7 - bg_lum, 0)
    t = rng.random(n) * (room_low + room_high)  # uniform over [0, bg-0.3] U [bg+0.3, 1]
    target = np.where(t < room_low, t, bg_lum + 0.3 + (t - room_low)).astype(f32)
    hue = rng.random((n, 3), dtype=f32)
    hue = hue - _luminance(hue)[:, None]
    c1 = np.clip(target[:, None] + rng.uniform(0.3, 0.9, (n, 1)).astype(f32) * hue, 0, 1)
    c2 = np.clip(1.0 - c1 + 0.2 * (rng.random((n, 3), dtype=f32) - 0.5), 0, 1)
    shade = 1.0 + 0.15 * np.clip(u / s, -1, 1)[:, None]  # a soft light gradient across the object
    fill = c1[:, :, None, None] * pattern[:, None] + c2[:, :, None, None] * (1 - pattern[:, None])
    img = bg * (1 - alpha) + np.clip(fill * shade, 0, 1) * alpha

    # Clutter drawn over the scene (it may occlude the object): up to three small blobs and maybe a thin line.
    for _ in range(3):
        on = (rng.random((n, 1, 1)) < 0.6).astype(f32)
        bx, by = rng.uniform(0, size, (2, n, 1, 1)).astype(f32)
        rad = rng.uniform(0.8, 2.0, (n, 1, 1)).astype(f32) * scale
        a = _coverage(np.sqrt((xx - bx) ** 2 + (yy - by) ** 2) - rad) * on
        col = rng.random((n, 3, 1, 1), dtype=f32)
        img = img * (1 - a[:, None]) + col * a[:, None]
    on = (rng.random((n, 1, 1)) < 0.5).astype(f32)
    p0 = rng.uniform(0, size, (2, n, 1, 1)).astype(f32)
    ang = rng.uniform(0, 2 * math.pi, (n, 1, 1)).astype(f32)
    length = rng.uniform(5, 12, (n, 1, 1)).astype(f32) * scale
    tx, ty = np.cos(ang), np.sin(ang)
    t = np.clip((xx - p0[0]) * tx + (yy - p0[1]) * ty, 0, length)
    dist = np.sqrt((xx - p0[0] - t * tx) ** 2 + (yy - p0[1] - t * ty) ** 2)
    a = _coverage(dist - 0.5 * scale) * on
    img = img * (1 - a[:, None]) + rng.random((n, 3, 1, 1), dtype=f32) * a[:, None]

    img = img + rng.normal(0, 1, img.shape).astype(f32) * rng.uniform(0.01, 0.05, (n, 1, 1, 1)).astype(f32)
    return img.astype(f32)
