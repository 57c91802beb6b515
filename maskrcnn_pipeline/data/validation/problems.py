"""The kinds of problem the validator reports, and how they are counted and exemplified.

Each kind is either an error (training would crash, or learn from wrong labels: the pipeline
stops) or a warning (worth knowing, training goes on). A dataset can have millions of
annotations, so the report keeps a count per kind and only the first few examples, each
naming the image file, image id and annotation id involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Problems that stop the pipeline: kind -> what it means (the README lists these).
ERRORS: dict[str, str] = {
    "not_coco": "the annotation file is unreadable, not JSON, or has no images/annotations/"
    "categories lists",
    "missing_key": "a required key is missing from an image, annotation or category",
    "wrong_type": "a value has the wrong type (e.g. a string id, a bbox that is not 4 numbers)",
    "duplicate_id": "two images, annotations or categories share an id",
    "unknown_image": "an annotation's image_id is not an image of the file",
    "unknown_category": "an annotation's category_id is not a category of the file",
    "bbox_not_positive": "a bbox has zero or negative width or height",
    "bbox_outside_image": "a bbox extends beyond its image (more than the tolerance)",
    "segmentation_empty": "a polygon segmentation has no polygon",
    "polygon_odd_coordinates": "a polygon has an odd number of coordinates",
    "polygon_too_short": "a polygon has fewer than 3 points",
    "rle_invalid": "an RLE segmentation lacks size or counts, or its counts do not fit its size",
    "rle_size_mismatch": "an RLE's size is not its image's [height, width]",
    "iscrowd_invalid": "iscrowd is not 0 or 1",
    "file_name_outside_folder": "an image file_name is absolute or climbs out with '..'",
    "image_missing": "an image file referenced by the annotations does not exist",
    "image_unreadable": "an image file cannot be opened as an image",
    "image_truncated": "an image file is cut short (a JPEG without its end marker, a PNG "
    "without its IEND chunk) and does not decode",
    "image_mode_unsupported": "an image's pixels have no fixed range (floating point), so "
    "there is no right way to 8-bit RGB",
    "image_size_mismatch": "an image file's upright size (EXIF orientation applied) differs "
    "from its declared width/height",
    "image_size_stored_frame": "the declared width/height is the size of the stored pixels of "
    "an image whose EXIF orientation turns it by 90 degrees: the annotations were likely made "
    "on the sideways image",
    "categories_differ": "the splits do not have the same categories (ids and names)",
    "empty": "the file has no images or no categories",
}
#: Problems reported while training goes on.
WARNINGS: dict[str, str] = {
    "image_without_annotations": "an image has no annotation (training skips it)",
    "category_without_annotations": "a category has no annotation in this split",
    "area_not_positive": "an annotation's area is 0 or negative (COCO counts it as small)",
    "duplicate_file_name": "two images share a file_name",
}


@dataclass
class _Kind:
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


class ProblemLog:
    """Counts per kind plus the first ``max_examples`` examples of each."""

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples
        self._kinds: dict[str, _Kind] = {}

    def add(
        self,
        kind: str,
        message: str,
        *,
        file: str | None = None,
        image_id: Any = None,
        annotation_id: Any = None,
    ) -> None:
        if kind not in ERRORS and kind not in WARNINGS:
            raise KeyError(f"unknown problem kind {kind!r}")
        entry = self._kinds.setdefault(kind, _Kind())
        entry.count += 1
        if len(entry.examples) < self.max_examples:
            example = {"file": file, "image_id": image_id, "annotation_id": annotation_id}
            entry.examples.append(
                {**{k: v for k, v in example.items() if v is not None}, "message": message}
            )

    def count(self, kind: str) -> int:
        return self._kinds[kind].count if kind in self._kinds else 0

    def summary(self, severity: dict[str, str]) -> dict[str, dict[str, Any]]:
        """``{kind: {"count": n, "examples": [...]}}`` for the kinds of one severity."""
        return {
            kind: {"count": entry.count, "examples": entry.examples}
            for kind, entry in sorted(self._kinds.items())
            if kind in severity
        }
