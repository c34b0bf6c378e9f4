"""Generate voldefense/assets/sample.png, the bundled demo image (a procedural 128x128 outdoor scene).

Kept out of the package: only the PNG ships. Deterministic (seeded), so re-running reproduces the same file.
Run: python bench/make_sample_image.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
OUT = Path(__file__).resolve().parents[1] / "voldefense" / "assets" / "sample.png"


def main() -> None:
    rng = np.random.default_rng(2023)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    # Sky: a vertical blue gradient with faint noise.
    t = y / SIZE
    sky = np.stack([90 + 110 * t, 150 + 80 * t, 235 - 20 * t], axis=-1)
    # Soft clouds: smoothed noise thresholded into white blobs in the upper half.
    noise = Image.fromarray((rng.random((SIZE // 8, SIZE // 8)) * 255).astype(np.uint8)).resize(
        (SIZE, SIZE), Image.BICUBIC
    )
    cloud = np.clip((np.asarray(noise, dtype=np.float64) / 255 - 0.62) * 4, 0, 1) * (y < 60)
    sky = sky * (1 - cloud[..., None]) + 245 * cloud[..., None]
    img = sky
    # Sun with a glow.
    d = np.hypot(x - 100, y - 22)
    glow = np.clip(1 - d / 22, 0, 1) ** 2
    img = img * (1 - glow[..., None]) + np.array([255, 236, 150]) * glow[..., None]
    # Two rolling hills.
    for base, amp, freq, phase, colour in (
        (80, 10, 0.05, 0.3, (70, 120, 60)),
        (92, 7, 0.08, 1.9, (55, 140, 50)),
    ):
        ridge = base + amp * np.sin(freq * x + phase)
        mask = y > ridge
        shade = 1 - 0.25 * np.clip((y - ridge) / 40, 0, 1)
        img = np.where(mask[..., None], np.array(colour) * shade[..., None], img)
    # Grass texture: per-pixel noise on the lower part.
    grass = rng.normal(0, 14, (SIZE, SIZE, 1)) * (y > 95)[..., None]
    img = np.clip(img + grass, 0, 255)
    canvas = Image.fromarray(img.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    # A house: walls, roof, door, window.
    draw.rectangle((20, 78, 52, 104), fill=(200, 170, 130), outline=(120, 90, 60))
    draw.polygon([(16, 79), (36, 60), (56, 79)], fill=(150, 50, 40))
    draw.rectangle((32, 90, 40, 104), fill=(90, 60, 35))
    draw.rectangle((24, 84, 30, 90), fill=(180, 215, 240), outline=(80, 80, 80))
    # A tree: trunk and a leafy crown made of overlapping dark-green discs.
    draw.rectangle((86, 82, 91, 104), fill=(95, 65, 40))
    for cx, cy, r in ((88, 70, 12), (80, 76, 8), (96, 76, 8), (88, 62, 8)):
        g = int(rng.integers(90, 120))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(30, g, 40))
    canvas = canvas.filter(ImageFilter.SMOOTH)
    # Leaf speckle after smoothing so the crown keeps fine texture.
    arr = np.asarray(canvas).astype(np.int16)
    crown = (np.hypot(x - 88, y - 70) < 16) & (arr[..., 1] > arr[..., 0] + 30) & (y < 86)
    arr[crown] += rng.integers(-25, 25, (int(crown.sum()), 1))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
