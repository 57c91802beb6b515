"""Checks of the image files an annotation file references: present, readable, right size.

Only the header is read by default (format and size: a few KB per image, so COCO's 118k
train images take a minute or two on a network file system); ``decode`` reads every pixel,
which also catches truncated files. Files are checked by a thread pool: the work is waiting
for storage, and Pillow releases the GIL while it reads.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from maskrcnn_pipeline.data.validation.problems import ProblemLog


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
            size = opened.size
            if decode:
                opened.load()
    except FileNotFoundError:
        return "image_missing", f"{path} does not exist"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return "image_unreadable", f"{path} cannot be read as an image ({exc})"
    declared = (image["width"], image["height"])
    if size != declared:
        return (
            "image_size_mismatch",
            f"{path} is {size[0]}x{size[1]} pixels; the annotations say "
            f"{declared[0]}x{declared[1]}",
        )
    return None
