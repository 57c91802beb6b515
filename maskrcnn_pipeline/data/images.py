"""Images as the user saw them: the upright frame that annotation tools display and record.

Phone photos store their pixels sideways and say so in an EXIF orientation tag (1-8);
annotation tools show, annotate and record the size of the upright image. Every reader of
image sizes in the pipeline goes through this module, so the validator, the prepare step and
the decoders agree on one frame.
"""

from __future__ import annotations

from pathlib import Path

from PIL import ExifTags, Image

# EXIF orientations 5-8 turn the stored image by 90 degrees: width and height swap
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened image, 1 (as stored) when absent or invalid."""
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
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
