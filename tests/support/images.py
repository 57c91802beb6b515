"""Image files as cameras and tools write them, for the decoding and validation tests.

Phones write the EXIF orientation tag (0x0112) in the JPEG's APP1 Exif block and store the
pixels as the sensor read them; Pillow writes that block the same way (``exif=``). Pillow
cannot write 16-bit RGB PNGs, so :func:`write_png16` writes the PNG chunks libpng writes
(IHDR with bit depth 16, one zlib IDAT, IEND) by hand.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

#: Pillow's transposition that turns upright pixels into the stored pixels of each EXIF
#: orientation: the inverse of what a viewer (ImageOps.exif_transpose) applies.
STORED_FROM_UPRIGHT: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB image in which every pixel differs: any wrong turn or flip shows."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def save_oriented(upright: Image.Image, path: Path, orientation: int, **options) -> Path:
    """Save ``upright`` as a camera would: the stored pixels turned for ``orientation``,
    with the tag saying how to turn them back."""
    turn = STORED_FROM_UPRIGHT[orientation]
    stored = upright.transpose(turn) if turn is not None else upright.copy()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestPhone"
    stored.save(path, exif=exif.tobytes(), **options)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG of uint16 ``pixels``: [H, W] grey or [H, W, 3] RGB."""
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )
    return path


def cut(path: Path, size: int) -> Path:
    """Keep the first ``size`` bytes of a file, as an interrupted copy does."""
    path.write_bytes(path.read_bytes()[:size])
    return path
