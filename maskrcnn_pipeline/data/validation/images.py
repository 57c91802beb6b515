"""Checks of the image files an annotation file references: present, readable, whole,
right size.

Only the header and the last bytes are read by default (format, size, EXIF orientation, and
whether a JPEG or PNG ends as it must: a few KB per image, so COCO's 118k train images take a
minute or two on a network file system); a file whose end looks cut is decoded to confirm.
``decode`` decodes every image with the decoder training uses (data/images.py), which also
catches damage inside a file. Sizes are compared in the upright frame (EXIF orientation
applied), the one annotation tools record. Files are checked by a thread pool: the work is
waiting for storage, and Pillow releases the GIL while it reads.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from maskrcnn_pipeline.data.images import (
    exif_orientation,
    mode_problem,
    read_rgb,
    truncation,
    upright_size,
)
from maskrcnn_pipeline.data.validation.problems import ProblemLog
from maskrcnn_pipeline.errors import DataError


def check_image_files(
    images_dir: Path,
    images: list[dict[str, Any]],
    problems: ProblemLog,
    *,
    decode: bool = False,
    workers: int = 4,
    shown_dir: Path | None = None,
) -> None:
    """Add a problem for every image that is missing, unreadable or of another size.

    Messages name files under ``shown_dir`` (the user's own folder, default ``images_dir``),
    not the links in data/<dataset>/ that the workflow reads them through.
    """
    if not images_dir.is_dir():
        shown = shown_dir or images_dir
        problems.add("image_missing", f"the images folder {shown} does not exist")
        return

    def inspect(image: dict[str, Any]) -> tuple[str, str] | None:
        problem = _inspect(images_dir, image, decode)
        if problem and shown_dir is not None:
            kind, message = problem
            return kind, message.replace(str(images_dir), str(shown_dir))
        return problem

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # map keeps the annotation file's order: the examples are the first problems in it
        for image, problem in zip(images, pool.map(inspect, images), strict=True):
            if problem:
                kind, message = problem
                problems.add(kind, message, file=image["file_name"], image_id=image["id"])


def _inspect(images_dir: Path, image: dict[str, Any], decode: bool) -> tuple[str, str] | None:
    """(kind, message) of the image's problem, or None when it is fine."""
    name = image["file_name"]
    if posixpath.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        return "file_name_outside_folder", f"file_name {name!r} must stay inside {images_dir}"
    path = images_dir / name
    try:
        with Image.open(path) as opened:
            mode, stored, orientation = opened.mode, opened.size, exif_orientation(opened)
            upright = upright_size(opened)
        cut = truncation(path)
    except FileNotFoundError:
        return "image_missing", f"{path} does not exist"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        cut = _truncation_or_none(path)
        if cut:
            return _truncated(path, cut)
        return "image_unreadable", f"{path} cannot be read as an image ({exc})"
    problem = mode_problem(mode)
    if problem:
        return "image_mode_unsupported", f"{path}: {problem}"
    # A file flagged by its end is decoded to be sure: data after the end marker (a phone's
    # motion photo) is harmless, and decoding is what training will do.
    if cut or decode:
        try:
            read_rgb(path)
        except DataError as exc:
            if cut:
                return _truncated(path, cut)
            return "image_unreadable", str(exc)
    return _size_problem(path, (image["width"], image["height"]), stored, upright, orientation)


def _truncation_or_none(path: Path) -> str | None:
    try:
        return truncation(path)
    except OSError:
        return None


def _truncated(path: Path, cut: str) -> tuple[str, str]:
    return "image_truncated", (
        f"{path}: {cut}, and it does not decode: the file is cut short (an interrupted copy "
        "or download?); copy it again from the original, or remove the image from the "
        "annotations"
    )


def _size_problem(
    path: Path,
    declared: tuple[int, int],
    stored: tuple[int, int],
    upright: tuple[int, int],
    orientation: int,
) -> tuple[str, str] | None:
    """Sizes are compared in the upright frame, the one annotation tools show and record (and
    training decodes); the message says which frame each size is in."""
    if upright == declared:
        return None
    said = f"the annotations say {declared[0]}x{declared[1]}"
    if orientation == 1:
        return "image_size_mismatch", f"{path} is {upright[0]}x{upright[1]} pixels; {said}"
    frames = (
        f"{path} stores {stored[0]}x{stored[1]} pixels with EXIF orientation {orientation}, "
        f"so it is {upright[0]}x{upright[1]} upright (as viewers, annotation tools and this "
        "pipeline show it)"
    )
    if stored == declared:
        return "image_size_stored_frame", (
            f"{frames}; {said}, the size of the stored, sideways pixels: the annotations were "
            "likely drawn on the image as stored. Annotate the upright image again, or, if the "
            "annotations match the stored pixels, remove the file's orientation tag (e.g. "
            "`exiftool -Orientation=1 -n FILE`) so that every reader sees the stored frame"
        )
    return "image_size_mismatch", f"{frames}; {said}"
