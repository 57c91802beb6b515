"""The prepared copy of a split's annotations: what the user meant, in the file every later
stage reads (``data/<dataset>/annotations/<split>.json``); the user's file is never touched.

Annotation tools export COCO with quirks (data/formats.py) that would make training learn
something else than what was annotated. Each fix is a setting, and every change is counted in
the returned changes (the validate rule puts them into ``validation.json``):

- placeholder categories (no annotation in the split, and named ``_background_``/``__ignore__``
  or the supercategory of every other category, like Roboflow's project category 0) are
  dropped, so the model has no phantom class; the other categories keep their ids, so
  predictions use the user's ids;
- a missing ``iscrowd`` is 0 and a missing (or null) segmentation of an object with a box
  makes it box-only (FiftyOne writes neither key when the object has none);
- crowd objects become instances (``crowd: instances``: CVAT writes every mask as
  ``iscrowd: 1``), so training and evaluation, which read this file, agree on them;
- labelme2coco's rectangles (the ring ``[[x1, y1, x2, y2]]``) become 4-corner polygons;
- missing, zero or null image sizes are read from the file's header, in the upright frame;
- ``area`` is recomputed from the mask where it disagrees (FiftyOne writes the box's area,
  which moves objects between COCO's small/medium/large buckets).

Box-only objects (``segmentation: []``) are left as they are: training gives them to the box
head only and the validator counts them (or refuses them, ``box_only: refuse``). Anything
malformed is also left as it is, for the validator to report once, with its fix.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from maskrcnn_pipeline.data.formats import FIX_KEYS
from maskrcnn_pipeline.data.images import upright_size_of_file
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

#: Category names that tools use for "no object" (labelme2coco, VOC-style label lists).
PLACEHOLDER_NAMES = frozenset({"_background_", "__background__", "__ignore__", "background"})
#: An area within this fraction (or 1 px) of the mask's is left alone: rounding, not a bug.
AREA_TOLERANCE = 0.01


@dataclass(frozen=True)
class PrepareSettings:
    """The dataset's fixes (data/formats.py: its own keys, else its format's)."""

    crowd: str = "ignore"
    box_only: str = "refuse"
    placeholder_categories: str = "drop"

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> PrepareSettings:
        return cls(**{key: values[key] for key in FIX_KEYS if key in values})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def prepare_annotations(
    data: Any, images_dir: Path, settings: PrepareSettings
) -> tuple[Any, dict[str, Any]]:
    """The prepared copy of a parsed annotation file and the changes made (counts, and the
    categories dropped with the reason). A file that is not COCO-shaped is returned as is.

    Its image and annotation entries are changed in place: ``data`` is a freshly parsed file.
    """
    changes: dict[str, Any] = {
        "categories_dropped": [],
        "placeholder_categories_kept": [],
        "crowd_as_instances": 0,
        "iscrowd_filled": 0,
        "box_only_filled": 0,
        "rectangles_as_polygons": 0,
        "image_sizes_filled": 0,
        "areas_recomputed": 0,
        "annotations_list_added": 0,
    }
    if (
        isinstance(data, dict)
        and "annotations" not in data
        and isinstance(data.get("images"), list)
    ):
        data = {**data, "annotations": []}  # FiftyOne leaves the key out of an unlabelled export
        changes["annotations_list_added"] = 1
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        return data, changes
    data = dict(data)
    annotations = [a for a in data["annotations"] if isinstance(a, dict)]
    _categories(data, annotations, settings, changes)
    images = {}
    for image in data["images"]:
        if isinstance(image, dict):
            changes["image_sizes_filled"] += _fill_size(image, images_dir)
            images[image.get("id")] = image
    for annotation in annotations:
        # FiftyOne leaves out iscrowd when the object has none, and segmentation for a box
        if "iscrowd" not in annotation:
            annotation["iscrowd"] = 0
            changes["iscrowd_filled"] += 1
        if annotation.get("segmentation") is None and "bbox" in annotation:
            annotation["segmentation"] = []
            changes["box_only_filled"] += 1
        if settings.crowd == "instances" and annotation.get("iscrowd") == 1:
            annotation["iscrowd"] = 0
            changes["crowd_as_instances"] += 1
        changes["rectangles_as_polygons"] += _rectangle(annotation)
        changes["areas_recomputed"] += _area(annotation, images.get(annotation.get("image_id")))
    return data, changes


def _categories(
    data: dict[str, Any],
    annotations: list[dict[str, Any]],
    settings: PrepareSettings,
    changes: dict[str, Any],
) -> None:
    """Drop (or list, with ``placeholder_categories: keep``) the placeholder categories."""
    used = Counter(a.get("category_id") for a in annotations)
    categories = [c for c in data["categories"] if isinstance(c, dict)]
    kept = []
    for category in data["categories"]:
        why = _placeholder(category, categories, used) if isinstance(category, dict) else None
        if why is None:
            kept.append(category)
            continue
        entry = {"id": category.get("id"), "name": category.get("name"), "why": why}
        if settings.placeholder_categories == "drop":
            changes["categories_dropped"].append(entry)
        else:
            kept.append(category)
            changes["placeholder_categories_kept"].append(entry)
    data["categories"] = kept


def _placeholder(
    category: dict[str, Any], categories: list[dict[str, Any]], used: Counter[Any]
) -> str | None:
    """Why ``category`` is a placeholder, or None when it is a class to learn."""
    if used[category.get("id")]:
        return None
    name = category.get("name")
    if isinstance(name, str) and name.lower() in PLACEHOLDER_NAMES:
        return f"named {name!r} (a tool's 'no object' label) and owns no annotation"
    others = [c for c in categories if c is not category]
    if others and all(c.get("supercategory") == name for c in others):
        return (
            f"owns no annotation and is the supercategory of every other category (a tool's "
            f"root category, as Roboflow exports its project {name!r})"
        )
    return None


def _fill_size(image: dict[str, Any], images_dir: Path) -> bool:
    """Read a missing, zero or null width/height from the image's header."""
    if _is_positive_int(image.get("width")) and _is_positive_int(image.get("height")):
        return False
    name = image.get("file_name")
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in Path(name).parts:
        return False
    try:
        image["width"], image["height"] = upright_size_of_file(images_dir / name)
    except (OSError, ValueError):
        return False  # the validator reports the missing or unreadable file
    return True


def _rectangle(annotation: dict[str, Any]) -> bool:
    """labelme2coco's rectangle: a ring of its two corners, [[x1, y1, x2, y2]]."""
    segmentation = annotation.get("segmentation")
    if not (
        isinstance(segmentation, list)
        and len(segmentation) == 1
        and isinstance(segmentation[0], list)
        and len(segmentation[0]) == 4
        and all(map(_is_number, segmentation[0]))
    ):
        return False
    x1, y1, x2, y2 = segmentation[0]
    (x1, x2), (y1, y2) = sorted((x1, x2)), sorted((y1, y2))
    if x1 == x2 or y1 == y2:
        return False  # a line: the validator reports it
    annotation["segmentation"] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
    return True


def mask_area(segmentation: Any, height: int, width: int) -> float | None:
    """The pixel area of a polygon list or an RLE (pycocotools, as COCO's own areas), or
    None for a box-only object or a segmentation the validator will refuse."""
    try:
        if isinstance(segmentation, list):
            polygons = [p for p in segmentation if isinstance(p, list)]
            if not polygons or len(polygons) != len(segmentation):
                return None
            if any(len(p) < 6 or len(p) % 2 or not all(map(_is_number, p)) for p in polygons):
                return None
            return float(
                mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))
            )
        if isinstance(segmentation, dict):
            if segmentation.get("size") != [height, width]:
                return None
            rle = segmentation
            if isinstance(rle.get("counts"), list):
                rle = mask_utils.frPyObjects(rle, height, width)
            return float(mask_utils.area(rle))
    except (TypeError, ValueError, IndexError):
        return None
    return None


def _area(annotation: dict[str, Any], image: dict[str, Any] | None) -> bool:
    """Set ``area`` to the mask's where it disagrees by more than the tolerance."""
    if image is None or not (
        _is_positive_int(image.get("width")) and _is_positive_int(image.get("height"))
    ):
        return False
    area = mask_area(annotation.get("segmentation"), image["height"], image["width"])
    if area is None:
        return False
    given = annotation.get("area")
    if _is_number(given) and abs(given - area) <= max(1.0, AREA_TOLERANCE * area):
        return False
    annotation["area"] = area
    return True


def prepare_split(
    annotations: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: PrepareSettings,
) -> dict[str, Any]:
    """Write the prepared copy of ``annotations`` to ``out``; return the changes made.

    A file that cannot be parsed is copied byte for byte, for the validator to report.
    """
    source = Path(annotations)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise PipelineError(f"{source}: cannot read the annotation file ({exc})") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        write_bytes_atomic(out, lambda handle: handle.write(raw))
        return prepare_annotations(None, Path(images_dir), settings)[1]
    prepared, changes = prepare_annotations(data, Path(images_dir), settings)
    write_json_atomic(out, prepared, indent=None)
    for entry in changes["categories_dropped"]:
        log.warning(
            "%s: category %s (%r) dropped: %s", source, entry["id"], entry["name"], entry["why"]
        )
    for key, count in changes.items():
        if isinstance(count, int) and count:
            log.warning("%s: %s: %d", source, key, count)
    return changes
