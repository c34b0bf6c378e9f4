"""`voldefense volumize IMAGE --out FILE.png`: draw an image's volume, its patches in rank order.

Each tile is one depth slice of the volume, labelled with its rank, its source position (row, col) in the
patch grid and its metric score. ``IMAGE`` is a path to any image Pillow reads, or ``sample`` for the bundled
demo image (``voldefense/assets/sample.png``, a 128x128 procedural scene).
"""

from __future__ import annotations

import argparse
import math
from importlib import resources
from pathlib import Path

from voldefense.errors import ConfigError, DataError

SAMPLE = "sample"
MIN_TILE = 96  # displayed patch side in pixels: small patches are upscaled so the labels stay legible


def sample_image_path() -> Path:
    """Path of the bundled sample image."""
    return Path(str(resources.files("voldefense") / "assets" / "sample.png"))


def _patch_size(text: str) -> int | tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"patch size must be N or HxW, got {text!r}") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"patch size must be N or HxW with positive ints, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _reference(text: str) -> str | int:
    if text == "auto":
        return text
    try:
        index = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"reference must be 'auto' or a patch index, got {text!r}") from None
    if index < 0:
        raise argparse.ArgumentTypeError(f"reference patch index must be >= 0, got {index}")
    return index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "image", metavar="IMAGE", help=f"image file, or '{SAMPLE}' for the bundled sample image"
    )
    parser.add_argument("--patch", type=_patch_size, default=16, help="patch size N or HxW (default 16)")
    parser.add_argument("--metric", default="mi", help="registered metric name (default mi)")
    parser.add_argument(
        "--order",
        default="ascending",
        choices=["ascending", "descending", "simple_first", "complex_first"],
        help="ranking order (default ascending)",
    )
    parser.add_argument(
        "--reference", type=_reference, default="auto", help="'auto' (lowest-entropy patch) or a patch index"
    )
    parser.add_argument("--bins", type=int, default=None, help="intensity bins of histogram metrics")
    parser.add_argument("--pad", action="store_true", help="replicate-pad images whose size is not divisible")
    parser.add_argument("--columns", type=int, default=None, help="tiles per row (default: about square)")
    parser.add_argument("--out", default="volume.png", help="output PNG (default volume.png)")


def load_image(spec: str):
    """The image `(1, C, H, W)` float in [0, 1] (C = 1 for greyscale, else 3) and its display name."""
    import numpy as np
    import torch

    from voldefense.data.images import read_image

    path = sample_image_path() if spec == SAMPLE else Path(spec)
    if not path.is_file():
        raise DataError(f"image file {str(path)!r} does not exist: give a path to a PNG/JPEG, or '{SAMPLE}'")
    image = read_image(path, mode="keep_grey")
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    return tensor.unsqueeze(0), path.name


def render_volume(
    volume,
    perm,
    scores,
    *,
    grid_cols: int,
    title: str,
    metric: str,
    reference_index: int | None = None,
    columns: int | None = None,
):
    """A PIL image of `volume` `(C, N, ph, pw)`: tiles in rank order, labelled rank, (row, col), score."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    c, n, ph, pw = volume.shape
    scale = max(1, math.ceil(MIN_TILE / max(ph, pw)))
    tile_w, tile_h = pw * scale, ph * scale
    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        font = ImageFont.load_default()
    line_h, label_h, margin = 13, 30, 6
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_w = max(tile_w, 96) + margin
    cell_h = tile_h + label_h + margin
    title_h = 2 * line_h + margin
    canvas = Image.new("RGB", (cols * cell_w + margin, rows * cell_h + title_h + margin), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin // 2), title, fill=(0, 0, 0), font=font)
    pixels = (volume.detach().clamp(0, 1) * 255).round().byte()
    for rank in range(n):
        src = int(perm[rank])
        patch = pixels[:, rank].permute(1, 2, 0).cpu().numpy()
        tile = Image.fromarray(np.ascontiguousarray(patch[..., 0] if c == 1 else patch[..., :3]))
        tile = tile.convert("RGB").resize((tile_w, tile_h), Image.NEAREST)
        x0 = margin + (rank % cols) * cell_w
        y0 = title_h + (rank // cols) * cell_h
        canvas.paste(tile, (x0, y0))
        is_ref = reference_index is not None and src == reference_index
        if is_ref:
            draw.rectangle((x0 - 2, y0 - 2, x0 + tile_w + 1, y0 + tile_h + 1), outline=(220, 30, 30), width=2)
        r, col = divmod(src, grid_cols)
        score = f"{metric}={float(scores[src]):.4g}" if scores is not None else metric
        draw.text(
            (x0, y0 + tile_h + 2), f"#{rank} ({r},{col}){' ref' if is_ref else ''}", fill=(0, 0, 0), font=font
        )
        draw.text((x0, y0 + tile_h + 2 + line_h), score, fill=(60, 60, 60), font=font)
    return canvas


def main(args: argparse.Namespace) -> int:
    from voldefense.ranking import lowest_entropy_index
    from voldefense.volumizer import Volumizer

    if args.columns is not None and args.columns < 1:
        raise ConfigError(f"--columns must be a positive int, got {args.columns}")
    options = {"bins": args.bins} if args.bins is not None else {}
    volumizer = Volumizer(
        args.patch,
        metric=args.metric,
        reference=args.reference,
        order=args.order,
        pad=args.pad,
        metric_options=options,
    )
    image, name = load_image(args.image)
    h, w = image.shape[-2:]
    volume, perm, scores = volumizer.volumize_with_scores(image)
    grid_rows, grid_cols = volumizer.grid((h, w))
    n = grid_rows * grid_cols
    reference_index: int | None = None
    ref_text = ""
    if volumizer.metric_spec.distance:
        if args.reference == "auto":
            reference_index = int(lowest_entropy_index(volumizer.patches(image), options)[0])
        else:
            if args.reference >= n:
                raise ConfigError(f"--reference {args.reference} is out of range: the image has {n} patches")
            reference_index = int(args.reference)
        ref_text = f", reference patch {divmod(reference_index, grid_cols)} (red)"
    ph, pw = volumizer.patch_size
    title = (
        f"{name} {w}x{h}: {n} patches of {ph}x{pw} ({grid_rows} rows x {grid_cols} cols)\n"
        f"metric {args.metric}, order {args.order}{ref_text}"
    )
    canvas = render_volume(
        volume[0],
        perm[0],
        None if scores is None else scores[0],
        grid_cols=grid_cols,
        title=title,
        metric=args.metric,
        reference_index=reference_index,
        columns=args.columns,
    )
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(out, format="PNG")
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot write {str(out)!r} ({err}): choose a writable --out path ending in .png"
        ) from None
    print(f"wrote {out} ({n} patches ranked by {args.metric}, {args.order})")
    return 0
