"""Image files for the tests that read them (not a test module; its basename must stay unique in tests/)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, side: int = 20_000) -> Path:
    """A valid ~100-byte PNG header declaring a `side` x `side` 1-bit grey canvas (400M pixels for 20,000): above
    Pillow's decompression-bomb limit, so opening it is refused before anything is allocated."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + (side + 7) // 8))  # one row; Pillow refuses before reading it
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path
