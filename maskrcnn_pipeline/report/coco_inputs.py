"""Reading the COCO files the predictions figure needs: ground truth, detections, masks.

Deliberately not ``pycocotools.coco.COCO``: it prints to stdout and indexes everything, while
the report needs only names, file names and the annotations of a handful of images. Records
are checked where they are used, and a bad one is reported by file and position.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import read_json

MIN_POLYGON_COORDS = 6
"""A polygon needs three points; pycocotools rejects shorter ones, COCO has a few."""


@dataclass(frozen=True)
class GroundTruth:
    """What the report uses from an annotation file, indexed by image id."""

    path: Path
    images: dict[int, dict[str, Any]]
    category_names: dict[int, str]
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def category_name(self, category_id: int) -> str:
        """The category's name, or its id when the annotation file does not list it."""
        return self.category_names.get(category_id, f"class {category_id}")


def read_ground_truth(path: Path) -> GroundTruth:
    """Read a COCO annotation file; ``images`` and ``categories`` are required."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a COCO annotation object")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise PipelineError(f"{path}: '{key}' must be a list; is this a COCO annotation file?")
    try:
        images = {int(image["id"]): image for image in data["images"]}
        names = {int(cat["id"]): str(cat["name"]) for cat in data["categories"]}
        annotations: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for annotation in data.get("annotations", []):
            annotations[int(annotation["image_id"])].append(annotation)
    except (KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"{path}: an image, category or annotation lacks {exc}") from exc
    return GroundTruth(path, images, names, dict(annotations))


def read_predictions(path: Path, image_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    """The detections of ``image_ids`` from a COCO results list, grouped by image.

    Only those detections are checked in depth: a full val set has ~500k of them and the
    figure draws a handful of images.
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise PipelineError(f"{path}: expected a list of COCO results (detections)")
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for index, detection in enumerate(data):
        if not isinstance(detection, dict) or "image_id" not in detection:
            raise PipelineError(f"{path}: entry {index} is not a detection with an 'image_id'")
        if detection["image_id"] in image_ids:
            grouped[detection["image_id"]].append(_checked_detection(path, index, detection))
    return dict(grouped)


def _checked_detection(path: Path, index: int, detection: dict[str, Any]) -> dict[str, Any]:
    where = f"{path}: entry {index}"
    for key in ("category_id", "score", "bbox"):
        if key not in detection:
            raise PipelineError(f"{where} lacks '{key}'")
    score = detection["score"]
    if not isinstance(score, int | float) or isinstance(score, bool):
        raise PipelineError(f"{where}: 'score' must be a number, got {score!r}")
    bbox = detection["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4):
        raise PipelineError(f"{where}: 'bbox' must be [x, y, width, height], got {bbox!r}")
    segmentation = detection.get("segmentation")
    if segmentation is not None and not (
        isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys()
    ):
        raise PipelineError(f"{where}: 'segmentation' must be an RLE with 'size' and 'counts'")
    return detection


def decode_mask(segmentation: Any, height: int, width: int, *, where: str) -> np.ndarray:
    """A boolean ``height`` x ``width`` mask from polygons, uncompressed or compressed RLE."""
    try:
        if isinstance(segmentation, list):
            polygons = [p for p in segmentation if len(p) >= MIN_POLYGON_COORDS]
            if not polygons:
                return np.zeros((height, width), dtype=bool)
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        mask = mask_utils.decode(rle).astype(bool)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"{where}: cannot decode the segmentation ({exc})") from exc
    if mask.shape != (height, width):
        raise PipelineError(
            f"{where}: mask is {mask.shape[0]}x{mask.shape[1]} but the image is "
            f"{height}x{width}; were predictions made on another split?"
        )
    return mask
