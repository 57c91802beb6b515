"""Deterministic fake COCO ground truth and detections, for tests and benchmarks.

Evaluation code must be checked on data that looks like COCO where it matters to the
metrics (object sizes spanning small/medium/large, polygons and crowd RLE in the ground
truth; RLE masks, boxes larger than their masks and many false positives in the detections)
without downloading anything. Everything is drawn from ``numpy.random.default_rng(seed)``
and rasterised with the pycocotools mask API, so the same arguments give the same files
(for a given numpy version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

# (height, width) pairs in the proportions of COCO images.
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((480, 640), (640, 480), (427, 640), (640, 427))
MIN_SIDE = 6.0  # pixels: smaller objects rasterise to almost nothing
POLYGON_VERTICES = (5, 12)  # range of vertex counts of the star-shaped object outlines


def category_ids(num_categories: int) -> list[int]:
    """Non-contiguous ids (like COCO's 1..90 with gaps), so that code indexing by id breaks."""
    return [k + 1 + k // 10 for k in range(num_categories)]


def make_ground_truth(
    num_images: int = 300,
    num_categories: int = 8,
    *,
    instances_per_image: float = 7.3,
    crowd_fraction: float = 0.02,
    seed: int = 0,
) -> dict[str, Any]:
    """Return a COCO ground-truth dict with polygon instances and some crowd RLE regions.

    ``instances_per_image`` is the Poisson mean (COCO val2017 has 36.8k instances over 5000
    images, i.e. 7.3); ``crowd_fraction`` is the share of images with one crowd region.
    """
    rng = np.random.default_rng([seed, 0])
    cats = category_ids(num_categories)
    images, annotations = [], []
    for index in range(num_images):
        height, width = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
        image = {
            "id": index + 1,
            "width": width,
            "height": height,
            "file_name": f"{index + 1:012d}.jpg",
        }
        images.append(image)
        for _ in range(rng.poisson(instances_per_image)):
            polygon = _random_polygon(rng, height, width)
            annotations.append(_polygon_annotation(image, int(rng.choice(cats)), polygon))
        if rng.random() < crowd_fraction:
            annotations.append(_crowd_annotation(rng, image, int(rng.choice(cats))))
    for ann_id, annotation in enumerate(annotations, start=1):
        annotation["id"] = ann_id
    return {
        "info": {"description": f"fake COCO (seed {seed})"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": cat, "name": f"class{cat:02d}", "supercategory": "fake"} for cat in cats
        ],
    }


def make_detections(
    ground_truth: dict[str, Any],
    *,
    detections_per_image: int = 100,
    recall: float = 0.85,
    boxes: bool = True,
    masks: bool = True,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Return COCO results: jittered copies of the ground truth plus false positives.

    Each non-crowd object is detected with probability ``recall`` (position/scale jittered,
    5 % with the wrong category); the remaining slots up to ``detections_per_image`` are
    false positives with lower scores. Masks are compressed RLE with ``counts`` as str;
    boxes are the masks' bounding boxes, so a box's area exceeds its mask's area.
    """
    rng = np.random.default_rng([seed, 1])
    cats = [cat["id"] for cat in ground_truth["categories"]]
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in ground_truth["images"]}
    for annotation in ground_truth["annotations"]:
        if not annotation["iscrowd"]:
            by_image[annotation["image_id"]].append(annotation)
    results: list[dict[str, Any]] = []
    for image in ground_truth["images"]:
        objects = by_image[image["id"]]
        results += _image_detections(
            rng, image, objects, cats, detections_per_image, recall, boxes, masks
        )
    return results


def write_fake_coco(
    directory: str | Path,
    *,
    num_images: int = 300,
    num_categories: int = 8,
    detections_per_image: int = 100,
    seed: int = 0,
    **detection_options: Any,
) -> tuple[Path, Path]:
    """Write ``gt.json`` and ``results.json`` into ``directory``; return both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gt = make_ground_truth(num_images, num_categories, seed=seed)
    results = make_detections(
        gt, detections_per_image=detections_per_image, seed=seed, **detection_options
    )
    gt_path, results_path = directory / "gt.json", directory / "results.json"
    gt_path.write_text(json.dumps(gt), encoding="utf-8")
    results_path.write_text(json.dumps(results), encoding="utf-8")
    return gt_path, results_path


def detections_from_ground_truth(
    ground_truth: dict[str, Any], *, score: float = 1.0
) -> list[dict[str, Any]]:
    """Perfect results: one detection per non-crowd object, exact box and mask (AP = 1)."""
    images = {image["id"]: image for image in ground_truth["images"]}
    detections = []
    for ann in ground_truth["annotations"]:
        if ann["iscrowd"]:
            continue
        image = images[ann["image_id"]]
        (mask,) = encode_polygons(ann["segmentation"], image["height"], image["width"])
        detections.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "score": score,
                "bbox": list(ann["bbox"]),
                "segmentation": mask,
            }
        )
    return detections


def encode_polygons(polygons: list[list[float]], height: int, width: int) -> list[dict[str, Any]]:
    """One JSON-ready compressed RLE (``counts`` as str, as in results files) per polygon."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    return [{"size": rle["size"], "counts": rle["counts"].decode()} for rle in rles]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a binary HxW mask as COCO *uncompressed* RLE, the format of crowd annotations."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]  # counts always start with a run of zeros
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _random_polygon(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A star-shaped outline (n x 2, x/y) whose size is log-uniform, like COCO's objects."""
    side = np.exp(rng.uniform(np.log(MIN_SIDE), np.log(0.7 * min(height, width))))
    aspect = np.exp(rng.normal(0.0, 0.4))
    box_w, box_h = side * np.sqrt(aspect), side / np.sqrt(aspect)
    center = (_uniform_inside(rng, box_w, width), _uniform_inside(rng, box_h, height))
    count = rng.integers(*POLYGON_VERTICES, endpoint=True)
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, count))
    radii = rng.uniform(0.65, 1.0, count)
    xs = center[0] + np.cos(angles) * radii * box_w / 2
    ys = center[1] + np.sin(angles) * radii * box_h / 2
    return _clip(np.stack([xs, ys], axis=1), height, width)


def _uniform_inside(rng: np.random.Generator, extent: float, limit: int) -> float:
    half = min(extent / 2, limit / 2)
    return float(rng.uniform(half, limit - half))


def _clip(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.round(np.clip(polygon, 0, [width, height]), 2)


def _polygon_annotation(image: dict[str, Any], category: int, polygon: np.ndarray) -> dict:
    flat = polygon.ravel().tolist()
    rle = mask_utils.frPyObjects([flat], image["height"], image["width"])[0]
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    return {
        "image_id": image["id"],
        "category_id": category,
        "segmentation": [flat],
        "area": float(mask_utils.area(rle)),
        "bbox": [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])],
        "iscrowd": 0,
    }


def _crowd_annotation(rng: np.random.Generator, image: dict[str, Any], category: int) -> dict:
    """A crowd region (union of a few rectangles) stored as uncompressed RLE, as COCO does."""
    height, width = image["height"], image["width"]
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(rng.integers(2, 5)):
        x0, y0 = rng.integers(0, width - 20), rng.integers(0, height - 20)
        mask[y0 : y0 + rng.integers(10, height // 3), x0 : x0 + rng.integers(10, width // 3)] = 1
    ys, xs = np.nonzero(mask)
    return {
        "image_id": image["id"],
        "category_id": category,
        "segmentation": uncompressed_rle(mask),
        "area": float(mask.sum()),
        "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
        "iscrowd": 1,
    }


def _jitter(rng: np.random.Generator, annotation: dict, height: int, width: int) -> np.ndarray:
    """Move and rescale a ground-truth outline, the way an imperfect detector would."""
    polygon = np.asarray(annotation["segmentation"][0], dtype=float).reshape(-1, 2)
    center = polygon.mean(axis=0)
    size = np.sqrt(max(annotation["area"], 1.0))
    scale = np.exp(rng.normal(0.0, 0.1, 2))
    shift = rng.normal(0.0, 0.07 * size, 2)
    return _clip((polygon - center) * scale + center + shift, height, width)


def _image_detections(
    rng: np.random.Generator,
    image: dict[str, Any],
    objects: list[dict[str, Any]],
    cats: list[int],
    count: int,
    recall: float,
    boxes: bool,
    masks: bool,
) -> list[dict[str, Any]]:
    """One image's detections: hits on ``objects`` first, false positives in the other slots."""
    height, width = image["height"], image["width"]
    hits = [obj for obj in objects if rng.random() < recall][:count]
    polygons = [_jitter(rng, obj, height, width) for obj in hits]
    polygons += [_random_polygon(rng, height, width) for _ in range(count - len(hits))]
    if not polygons:
        return []
    labels = [obj["category_id"] if rng.random() > 0.05 else int(rng.choice(cats)) for obj in hits]
    labels += rng.choice(cats, count - len(hits)).tolist()
    scores = np.concatenate(
        [rng.uniform(0.3, 1.0, len(hits)), rng.beta(1.0, 4.0, count - len(hits))]
    )
    rles = encode_polygons([p.ravel().tolist() for p in polygons], height, width)
    bboxes = mask_utils.toBbox(rles)
    detections = []
    for rle, bbox, label, score in zip(rles, bboxes, labels, scores, strict=True):
        detection: dict[str, Any] = {
            "image_id": image["id"],
            "category_id": int(label),
            "score": round(float(score), 5),
        }
        if boxes:
            detection["bbox"] = [float(v) for v in bbox]
        if masks:
            detection["segmentation"] = rle
        detections.append(detection)
    return detections
