"""Reading one image file: the single path every image goes through (`imagefolder` items, `voldefense volumize`).

Whatever is wrong with the file (missing, not an image, truncated, a decompression bomb: a small file declaring
a huge canvas) is one `DataError` line naming the file and the fix, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from voldefense.errors import DataError

# Pillow modes read as one grey channel when the caller keeps grey images grey.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def read_image(path: str | Path, mode: Literal["RGB", "keep_grey"] = "RGB") -> Any:
    """The decoded image at `path` as a PIL image in mode RGB, or L for a grey file when `mode="keep_grey"`.

    PIL is imported here, not at module level: listing datasets must stay cheap.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            target = "L" if mode == "keep_grey" and image.mode in GREY_MODES else "RGB"
            return image.convert(target)  # convert() decodes the whole file, so truncation shows up here
    except FileNotFoundError:
        raise _error(path, "image file does not exist", "check the path") from None
    except Image.DecompressionBombError as err:
        # Pillow refuses at open(), before allocating anything; its message carries the declared size.
        raise _error(
            path, f"refused as a likely decompression bomb ({str(err).rstrip('.')})", "use a smaller image"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise _error(
            path, f"not a readable image ({type(err).__name__}: {err})", "replace it with a PNG or JPEG"
        ) from None


def _error(path: Path, problem: str, fix: str) -> DataError:
    return DataError(f"{path}: {' '.join(problem.split())}; {fix}")
