"""Images as the user saw them: the upright frame that annotation tools display and record,
decoded to 8-bit RGB whatever the file stores.

Phone photos store their pixels sideways and say so in an EXIF orientation tag (1-8);
annotation tools show, annotate and record the size of the upright image. Every reader of
image sizes and pixels in the pipeline goes through this module (training, the GPU decode
path, predict and infer, overlays, the validator), so they all agree on one frame and one
range: 16-bit images are scaled to 0..255 (not clipped), grey, palette, RGBA and CMYK images
become RGB. Pillow does the decoding (torchvision's decoders are deprecated since 0.29 and
its GPU decoder ignores the EXIF orientation), so the validator's full decode is exactly the
decode training does.

A truncated file (an interrupted copy or download) is caught cheaply: a JPEG must end with
its end-of-image marker and a PNG with its IEND chunk, which takes reading a file's last
bytes, not decoding it (:func:`truncation`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from maskrcnn_pipeline.errors import DataError

# EXIF orientations 5-8 turn the stored image by 90 degrees: width and height swap
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})

#: How stored pixels [..., H, W] become upright, per EXIF orientation: (transpose H and W,
#: then flip the rows, flip the columns); the same turns as Pillow's ImageOps.exif_transpose,
#: for decoders that leave the orientation to the caller (nvjpeg on the GPU).
UPRIGHT_STEPS: dict[int, tuple[bool, bool, bool]] = {
    1: (False, False, False),
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}

#: The same turns as Pillow transpositions (what ImageOps.exif_transpose does), for the CPU
#: decoder. Not exif_transpose itself: it reads a PNG's metadata after the pixels too, which
#: the header-only sizes cannot, and the frame must be the same for both.
_PILLOW_TURNS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: Pillow modes of 16-bit (or wider integer) grey pixels, read as 0..65535
_WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
#: Pillow modes whose pixel values have no fixed range: there is no right way to 8 bits
_UNSUPPORTED_MODES = frozenset({"F"})

#: What each checked format's data must end with (JPEG's EOI marker; PNG's IEND chunk: its
#: zero length, type and CRC), keyed by the format's signature at the start of the file.
_END_MARKERS: dict[bytes, tuple[str, bytes, str]] = {
    b"\xff\xd8\xff": ("JPEG", b"\xff\xd9", "its end-of-image marker (FF D9)"),
    b"\x89PNG\r\n\x1a\n": ("PNG", b"\x00\x00\x00\x00IEND\xaeB`\x82", "its IEND chunk"),
}


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened image, 1 (as stored) when absent or invalid.

    From the header only: Pillow's own ``PngImageFile.getexif`` decodes the whole image
    to look for metadata after the pixels, so the base class's reader is called (EXIF and
    XMP found before the pixels, which is where PNG writers put them).
    """
    value = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image after its EXIF orientation is applied."""
    width, height = image.size
    if exif_orientation(image) in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def upright_size_of_file(path: Path) -> tuple[int, int]:
    """(width, height) of an image file in the upright frame, from its header only."""
    with Image.open(path) as image:
        return upright_size(image)


@dataclass(frozen=True)
class Header:
    """What an image's header says (no pixel is decoded)."""

    format: str | None
    mode: str
    orientation: int
    #: (width, height) of the stored pixels, before the orientation is applied
    stored_size: tuple[int, int]

    @property
    def upright_size(self) -> tuple[int, int]:
        width, height = self.stored_size
        return (height, width) if self.orientation in _TRANSPOSING_ORIENTATIONS else (width, height)

    @property
    def device_decodable(self) -> bool:
        """An 8-bit colour or grey JPEG: what nvjpeg decodes to RGB (not CMYK, not PNG)."""
        return self.format == "JPEG" and self.mode in ("RGB", "L")


def read_header(data: bytes, path: Path) -> Header:
    """The header of an image file's bytes (``path`` names it in errors)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Header(image.format, image.mode, exif_orientation(image), image.size)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _undecodable(path, data, exc) from exc


def mode_problem(mode: str) -> str | None:
    """Why pixels of Pillow ``mode`` cannot become 8-bit RGB, or None when they can."""
    if mode in _UNSUPPORTED_MODES:
        return (
            f"its pixels are {mode!r} (floating point) values with no fixed range; "
            "save it as an 8- or 16-bit image"
        )
    return None


def to_rgb8(image: Image.Image) -> np.ndarray:
    """An opened image's pixels as uint8 RGB [H, W, 3], in the frame the image has.

    16-bit grey is scaled from 0..65535 to 0..255 (rounded); Pillow already reduces 16-bit
    RGB(A) PNGs to their high bytes. Alpha is dropped (the colour as stored, which is also
    what Pillow's convert does); palette, grey, CMYK and YCbCr pixels are converted.
    """
    problem = mode_problem(image.mode)
    if problem:
        raise ValueError(problem)
    if image.mode in _WIDE_GREY_MODES:
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def decode_rgb(data: bytes, path: Path) -> np.ndarray:
    """Image file bytes as upright uint8 RGB [H, W, 3] (``path`` names the file in errors:
    a :class:`DataError` saying what is wrong)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = exif_orientation(image)
            if orientation != 1:
                return to_rgb8(image.transpose(_PILLOW_TURNS[orientation]))
            return to_rgb8(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _undecodable(path, data, exc) from exc


def _undecodable(path: Path, data: bytes, error: Exception) -> DataError:
    """Why an image cannot be used (a cut file said as such) and what to do."""
    cut = truncation_of_bytes(data)
    reason = f"the file is truncated: {cut}" if cut else str(error)
    return DataError(
        f"{path}: cannot decode image ({reason}); replace it with a good copy, or remove it "
        "from the annotations",
        path=path,
    )


def read_file_bytes(path: Path) -> bytes:
    """A file's bytes, or a :class:`DataError` naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found", path=path) from exc
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read image file ({exc.strerror or exc})", path=path
        ) from exc


def read_rgb(path: Path) -> np.ndarray:
    """An image file as upright uint8 RGB [H, W, 3]: the one decoder every reader uses."""
    return decode_rgb(read_file_bytes(path), path)


def _truncation(start: bytes, end: bytes, size: int) -> str | None:
    for signature, (name, marker, what) in _END_MARKERS.items():
        if start.startswith(signature):
            if size < len(signature) + len(marker) or not end.endswith(marker):
                return f"this {name} file ({size} bytes) does not end with {what}"
            return None
    return None


def truncation_of_bytes(data: bytes) -> str | None:
    """:func:`truncation` of bytes already read."""
    return _truncation(data[:8], data[-12:], len(data))


def truncation(path: Path) -> str | None:
    """Why a JPEG or PNG file looks cut short, from its first and last bytes only; None when
    it ends as its format requires (or is of another format, which is not checked).

    Some files carry data after their end (a phone's motion photo appends its video to the
    JPEG): such a file fails this check but decodes, so a caller that needs certainty decodes
    the files this check flags (the validator does).
    """
    with path.open("rb") as file:
        start = file.read(8)
        size = file.seek(0, io.SEEK_END)
        file.seek(max(0, size - 12))
        end = file.read()
    return _truncation(start, end, size)
