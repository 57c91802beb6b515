"""Existing copies: link a folder source's split into data/<dataset>/, never copy it.

COCO on shared cluster storage (or any dataset already on disk) is used in place: the
pipeline checks the layout (the images folder and annotation file exist and are readable)
and puts symbolic links at the paths every later stage reads, so train, predict, evaluate
and report see the same ``data/<dataset>/...`` shape whatever the source. Whether every
image the annotations reference is there is the validate rule's job, which runs next.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)


def link_split(
    images: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    images_link: str | os.PathLike[str],
    annotations_link: str | os.PathLike[str],
) -> None:
    """Check a split's images folder and annotation file, then link them (atomically)."""
    images, annotations = Path(os.path.abspath(images)), Path(os.path.abspath(annotations))
    if not images.is_dir():
        raise PipelineError(
            f"{images}: images folder not found; check the dataset's root and the split's "
            "images path in the config (relative paths start from root)"
        )
    if not annotations.is_file():
        raise PipelineError(
            f"{annotations}: annotation file not found; check the dataset's root and the "
            "split's annotations path in the config"
        )
    for path in (images, annotations):
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise PipelineError(f"{path}: not readable by this user; fix its permissions")
    images_link, annotations_link = Path(images_link), Path(annotations_link)
    dataset_dir = Path(os.path.commonpath([images_link.parent, annotations_link.parent]))
    for folder in {dataset_dir, annotations_link.parent}:
        if folder.is_symlink():
            raise PipelineError(
                f"{folder}: is a link; the pipeline writes its links and validation report "
                "there, so it must be a real folder. Remove the link and point the dataset's "
                "root at the data instead"
            )
    place_link(images_link, images)
    place_link(annotations_link, annotations)
    log.info("linked %s -> %s and %s -> %s", images_link, images, annotations_link, annotations)


def place_link(link: Path, target: Path) -> None:
    """Make ``link`` point at ``target``, replacing an older link but never real data."""
    if link.exists() and not link.is_symlink():
        raise PipelineError(f"{link}: exists and is not a link; move it away (it is not replaced)")
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=target.is_dir())
    os.replace(tmp, link)
