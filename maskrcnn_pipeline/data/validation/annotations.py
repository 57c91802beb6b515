"""Checks of a COCO instance-segmentation annotation file's content (no image is opened).

Keys and types first; an entry that fails them is left out of the later checks, so one
problem is reported once, not again as a consequence. Then ids (unique; every annotation's
image and category exist) and geometry (bbox inside its image with positive size, polygons
with >= 3 points and an even number of coordinates, RLE of the image's size, iscrowd 0/1).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from maskrcnn_pipeline.data.formats import is_box_only
from maskrcnn_pipeline.data.validation.problems import ProblemLog


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_bbox(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))


Spec = Mapping[str, tuple[Callable[[Any], bool], str]]

IMAGE_KEYS: Spec = {
    "id": (_is_int, "an integer"),
    "file_name": (_is_name, "a non-empty string"),
    "width": (_is_positive_int, "a positive integer"),
    "height": (_is_positive_int, "a positive integer"),
}
ANNOTATION_KEYS: Spec = {
    "id": (_is_int, "an integer"),
    "image_id": (_is_int, "an integer"),
    "category_id": (_is_int, "an integer"),
    "bbox": (_is_bbox, "4 numbers [x, y, width, height]"),
    "segmentation": (lambda v: isinstance(v, list | dict), "a list of polygons or an RLE object"),
    "area": (_is_number, "a number"),
    "iscrowd": (_is_int, "the integer 0 or 1"),
}
CATEGORY_KEYS: Spec = {"id": (_is_int, "an integer"), "name": (_is_name, "a non-empty string")}


@dataclass
class CocoIndex:
    """The well-formed entries of a file, for the image checks and the report."""

    images: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    #: category id -> annotations, crowd, box_only and trainable instances
    per_category: dict[int, dict[str, int]] = field(default_factory=dict)


def check_coco(
    data: Any, problems: ProblemLog, *, bbox_tolerance: float, box_only: str = "refuse"
) -> CocoIndex | None:
    """Check a parsed annotation file; None when it is not COCO-shaped at all.

    ``box_only`` (data/formats.py) says whether a box-only object (``segmentation: []``) is an
    error (refuse) or a box-head-only instance (skip_mask), counted per category.
    """
    if not isinstance(data, dict):
        problems.add("not_coco", "the top level is not a JSON object")
        return None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            what = "has no" if key not in data else "has a non-list"
            problems.add("not_coco", f"the file {what} {key!r} list")
            return None
    index = CocoIndex()
    images = _entries(data["images"], "image", IMAGE_KEYS, problems, index.images)
    categories = _entries(data["categories"], "category", CATEGORY_KEYS, problems, index.categories)
    if not data["images"] or not data["categories"]:
        problems.add("empty", "the file has no images" if not data["images"] else "no categories")
    checker = _AnnotationChecker(images, categories, problems, bbox_tolerance, box_only)
    valid: list[dict[str, Any]] = []
    _entries(data["annotations"], "annotation", ANNOTATION_KEYS, problems, valid)
    for annotation in valid:
        checker.check(annotation)
    index.counts = {
        "images": len(data["images"]),
        "annotations": len(data["annotations"]),
        "crowd_annotations": checker.crowd,
        "box_only_annotations": checker.box_only,
        "categories": len(data["categories"]),
    }
    index.per_category = {
        category["id"]: dict(checker.category_counts[category["id"]])
        for category in index.categories
    }
    if checker.box_only and box_only != "refuse":
        problems.add(
            "box_only",
            f"{checker.box_only} box-only object(s): the mask loss ignores them",
            count=checker.box_only,
        )
    _coverage_warnings(index, checker, problems)
    return index


def _entries(
    entries: list[Any],
    what: str,
    spec: Spec,
    problems: ProblemLog,
    valid: list[dict[str, Any]],
) -> dict[int, dict[str, Any] | None]:
    """Check keys, types and unique ids; append well-formed entries to ``valid``.

    Returns id -> entry for every entry with a usable id (None for a malformed entry), so a
    reference to a malformed image is not reported again as a reference to no image.
    """
    by_id: dict[int, dict[str, Any] | None] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add("wrong_type", f"{what} #{position} is not a JSON object")
            continue
        entry_id = entry.get("id")
        where = f"{what} {entry_id!r}" if "id" in entry else f"{what} #{position}"
        ids = _ids(what, entry)
        well_formed = True
        for key, (check, expected) in spec.items():
            if key not in entry:
                problems.add("missing_key", f"{where} has no {key!r}", **ids)
                well_formed = False
            elif not check(entry[key]):
                message = f"{where}: {key} must be {expected}, got {_short(entry[key])}"
                problems.add("wrong_type", message, **ids)
                well_formed = False
        if not _is_int(entry_id):
            continue
        if entry_id in by_id:
            problems.add("duplicate_id", f"{what} id {entry_id} is used more than once", **ids)
            continue
        by_id[entry_id] = entry if well_formed else None
        if well_formed:
            valid.append(entry)
    return by_id


def _ids(what: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """How a problem example names the entry: its image (and annotation) id and file."""
    if what == "image":
        return {"image_id": entry.get("id"), "file": entry.get("file_name")}
    if what == "annotation":
        return {"image_id": entry.get("image_id"), "annotation_id": entry.get("id")}
    return {}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _AnnotationChecker:
    """References and geometry of well-formed annotations."""

    def __init__(
        self,
        images: dict[int, dict[str, Any] | None],
        categories: dict[int, dict[str, Any] | None],
        problems: ProblemLog,
        bbox_tolerance: float,
        box_only: str,
    ) -> None:
        self.images, self.categories, self.problems = images, categories, problems
        self.tolerance, self.refuse_box_only = bbox_tolerance, box_only == "refuse"
        self.per_image: Counter[int] = Counter()
        self.per_category: Counter[int] = Counter()
        self.category_counts: dict[int, Counter[str]] = {
            i: Counter(annotations=0, crowd=0, box_only=0, trainable=0) for i in categories
        }
        self.crowd = self.box_only = 0

    def check(self, annotation: dict[str, Any]) -> None:
        image_id, category_id = annotation["image_id"], annotation["category_id"]
        image = self.images.get(image_id)
        ids = {"image_id": image_id, "annotation_id": annotation["id"]}
        if image is not None:
            ids["file"] = image["file_name"]
        if image_id not in self.images:
            self.problems.add("unknown_image", f"image_id {image_id} is not an image", **ids)
        if category_id not in self.categories:
            self.problems.add(
                "unknown_category", f"category_id {category_id} is not a category", **ids
            )
        self.per_image[image_id] += 1
        self.per_category[category_id] += 1
        if annotation["iscrowd"] not in (0, 1):
            self.problems.add(
                "iscrowd_invalid", f"iscrowd is {annotation['iscrowd']}, not 0 or 1", **ids
            )
        self.crowd += annotation["iscrowd"] == 1
        self._count(annotation)
        if annotation["area"] <= 0:
            self.problems.add("area_not_positive", f"area is {annotation['area']}", **ids)
        self._bbox(annotation["bbox"], image, ids)
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):
            self._polygons(segmentation, ids)
        else:
            self._rle(segmentation, image, ids)

    def _count(self, annotation: dict[str, Any]) -> None:
        """Per category: what training gets of it (coco.py: not crowd, a box of >= 1 px)."""
        counts = self.category_counts.get(annotation["category_id"])
        if counts is None:
            return
        counts["annotations"] += 1
        crowd = annotation["iscrowd"] == 1
        counts["crowd"] += crowd
        box_only = is_box_only(annotation)
        counts["box_only"] += box_only
        _, _, width, height = annotation["bbox"]
        counts["trainable"] += not crowd and width >= 1 and height >= 1

    def _bbox(self, bbox: list[float], image: dict[str, Any] | None, ids: dict[str, Any]) -> None:
        x, y, width, height = bbox
        if width <= 0 or height <= 0:
            self.problems.add(
                "bbox_not_positive", f"bbox {bbox} has width {width:g} and height {height:g}", **ids
            )
            return
        if image is None:
            return
        tol = self.tolerance
        if (
            x < -tol
            or y < -tol
            or x + width > image["width"] + tol
            or y + height > image["height"] + tol
        ):
            self.problems.add(
                "bbox_outside_image",
                f"bbox {bbox} spans x {x:g}..{x + width:g}, y {y:g}..{y + height:g}: outside "
                f"the {image['width']}x{image['height']} image (tolerance {tol:g} px)",
                **ids,
            )

    def _polygons(self, polygons: list[Any], ids: dict[str, Any]) -> None:
        if not polygons:
            self.box_only += 1
            if self.refuse_box_only:
                self.problems.add(
                    "segmentation_empty",
                    "segmentation is [] (a box-only object: CVAT, Label Studio and Roboflow "
                    "export rectangles so) and box_only is refuse",
                    **ids,
                )
        for number, polygon in enumerate(polygons):
            if not isinstance(polygon, list) or not all(map(_is_number, polygon)):
                message = f"polygon {number} is not a list of numbers: {_short(polygon)}"
                self.problems.add("wrong_type", message, **ids)
            elif len(polygon) % 2:
                self.problems.add(
                    "polygon_odd_coordinates",
                    f"polygon {number} has {len(polygon)} coordinates, an odd number",
                    **ids,
                )
            elif len(polygon) < 6:
                self.problems.add(
                    "polygon_too_short",
                    f"polygon {number} has {len(polygon) // 2} point(s); at least 3 are needed",
                    **ids,
                )

    def _rle(self, rle: dict[str, Any], image: dict[str, Any] | None, ids: dict[str, Any]) -> None:
        size, counts = rle.get("size"), rle.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(map(_is_int, size))):
            self.problems.add(
                "rle_invalid", f"RLE size {_short(size)} is not [height, width]", **ids
            )
            return
        if isinstance(counts, list) and all(map(_is_int, counts)):
            if sum(counts) != size[0] * size[1]:
                self.problems.add(
                    "rle_invalid",
                    f"RLE counts cover {sum(counts)} pixels, not {size[0]}x{size[1]}",
                    **ids,
                )
        elif not isinstance(counts, str):
            self.problems.add(
                "rle_invalid", f"RLE counts {_short(counts)} are neither a list nor a string", **ids
            )
        if image is not None and size != [image["height"], image["width"]]:
            self.problems.add(
                "rle_size_mismatch",
                f"RLE size {size} is not the image's [height, width] "
                f"[{image['height']}, {image['width']}]",
                **ids,
            )


def _coverage_warnings(index: CocoIndex, checker: _AnnotationChecker, problems: ProblemLog) -> None:
    """Images and categories nobody annotated, and file names used twice."""
    for image in index.images:
        if not checker.per_image[image["id"]]:
            problems.add(
                "image_without_annotations",
                "the image has no annotation",
                image_id=image["id"],
                file=image["file_name"],
            )
    for category in index.categories:
        if not checker.per_category[category["id"]]:
            problems.add(
                "category_without_annotations",
                f"category {category['id']} ({category['name']!r}) has no annotation",
            )
    names = Counter(image["file_name"] for image in index.images)
    for image in index.images:
        if names[image["file_name"]] > 1:
            problems.add(
                "duplicate_file_name",
                f"{names[image['file_name']]} images use this file_name",
                image_id=image["id"],
                file=image["file_name"],
            )
