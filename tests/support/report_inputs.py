"""Inputs of the report stages, written in tmp_path in the formats the training and
evaluation stages write (metrics.jsonl, metrics.json, a small COCO dataset, predictions with
RLE masks, per-category and PR-curve CSVs, provenance.json): no data, no GPU, no torch.

One writer per input file; the run report, the comparison and the overlay tests share them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from maskrcnn_pipeline.report.tables import COCO_STATS

#: The size of every image write_dataset draws.
HEIGHT, WIDTH = 120, 160
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "kite"}]
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_metrics_log(path: Path, *, with_eval: bool = True, with_data_time: bool = True) -> Path:
    """~50 lines like the training loop writes: losses decay, lr warms up then steps down."""
    rng = np.random.default_rng(0)
    lines = []
    for step in range(1, 49):
        iteration = step * 20
        line: dict[str, Any] = {"iteration": iteration, "seconds": iteration * 0.8}
        line["lr"] = 0.02 * min(1.0, iteration / 200) * (0.1 if iteration > 800 else 1.0)
        components = {
            key: float(scale * math.exp(-iteration / 500) + 0.05 * rng.random())
            for key, scale in zip(LOSS_KEYS, (0.8, 0.6, 0.7, 0.3, 0.2), strict=True)
        }
        line["loss"] = sum(components.values())
        line |= components
        line["images_per_s"] = float(24 + rng.normal())
        if with_data_time:
            line["data_time"] = float(0.01 + 0.002 * rng.random())
            line["max_memory_mb"] = 3000.0 + step
        lines.append(line)
        if with_eval and iteration in (480, 960):
            ap = iteration / 3000
            stats = {"AP": ap, "AP50": ap + 0.2, "AP75": ap + 0.05}
            lines.append({"iteration": iteration, "eval": {"bbox": stats, "segm": stats}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def coco_stats(offset: float) -> dict[str, float]:
    """12 distinct values; APs is -1 as COCOeval writes when there are no small objects."""
    stats = {name: round(0.1 + offset + 0.02 * i, 3) for i, name in enumerate(COCO_STATS)}
    stats["APs"] = -1.0
    return stats


def draw_scene(index: int) -> tuple[Image.Image, list[list[float]]]:
    """A gradient image with a rectangle and a triangle; returns their polygons."""
    gradient = np.linspace(40, 200, WIDTH, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (HEIGHT, 1))] * 3, axis=-1)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    x0 = 10 + 8 * index
    rectangle = [x0, 20, x0 + 50, 20, x0 + 50, 80, x0, 80]
    triangle = [100, 100, 150, 100, 125, 30 + 5 * index]
    draw.polygon(rectangle, fill=(200, 60, 60))
    draw.polygon(triangle, fill=(60, 60, 200))
    return image, [rectangle, triangle]


def write_dataset(root: Path, count: int = 5) -> tuple[Path, Path]:
    """JPEGs and a COCO annotation file with polygons, one crowd RLE, one unlabelled image."""
    images_dir = root / "images"
    images_dir.mkdir()
    images, annotations = [], []
    for index in range(count):
        image_id = 100 + 7 * index
        image, polygons = draw_scene(index)
        file_name = f"{image_id:012d}.jpg"
        image.save(images_dir / file_name, quality=90)
        images.append({"id": image_id, "file_name": file_name, "height": HEIGHT, "width": WIDTH})
        if index == count - 1:
            continue  # an image without annotations is never sampled
        for polygon, category in zip(polygons, (1, 2), strict=True):
            xs, ys = polygon[0::2], polygon[1::2]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": [polygon],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    crowd = np.zeros((HEIGHT, WIDTH), dtype=np.uint8, order="F")
    crowd[90:115, 5:40] = 1
    rle = mask_utils.encode(crowd)
    annotations.append(
        {
            "id": len(annotations) + 1,
            "image_id": 100,
            "category_id": 7,
            "iscrowd": 1,
            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
            "bbox": [5, 90, 35, 25],
            "area": 875,
        }
    )
    gt = write_json(
        root / "instances_val.json",
        {"images": images, "annotations": annotations, "categories": CATEGORIES},
    )
    return gt, images_dir


def detection(image_id: int, category_id: int, score: float, box: list[int]) -> dict[str, Any]:
    """A COCO result with an RLE mask filling ``box`` ([x, y, w, h])."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8, order="F")
    x, y, w, h = box
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(mask)
    return {
        "image_id": image_id,
        "category_id": category_id,
        "score": score,
        "bbox": [float(v) for v in box],
        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
    }


def predictions_for(gt_path: Path, *, shift: int = 0) -> list[dict[str, Any]]:
    """One good detection per object, one low-scoring one per image (hidden by the threshold)."""
    gt = json.loads(gt_path.read_text())
    results = []
    for annotation in gt["annotations"]:
        x, y, w, h = (int(v) for v in annotation["bbox"])
        score = 0.6 + 0.1 * (annotation["id"] % 4)
        results.append(
            detection(
                annotation["image_id"],
                annotation["category_id"],
                score,
                [x + shift, y + 2, max(w - 4, 1), max(h - 4, 1)],
            )
        )
    for image in gt["images"]:
        results.append(detection(image["id"], 7, 0.2, [60, 5, 30, 20]))
    return results


def write_per_category(path: Path) -> Path:
    rows = [
        {
            "iou_type": iou_type,
            "category_id": cid,
            "category_name": f"category {cid}",
            "AP": (cid * 37 % 25) / 30 - (0.05 if iou_type == "segm" else 0),
            "AP50": 0.9,
            "AP75": 0.5,
        }
        for iou_type in ("bbox", "segm")
        for cid in range(1, 26)
    ]
    rows[3]["AP"] = -1.0  # a category without ground truth
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_pr_curves(path: Path) -> Path:
    recall = np.linspace(0, 1, 101)
    rows = [
        {
            "iou_type": iou_type,
            "iou_threshold": t,
            "recall": r,
            "precision": -1.0 if r > 0.95 else float(1 - r**power),
        }
        for iou_type in ("bbox", "segm")
        for t, power in ((0.5, 4), (0.75, 2))
        for r in recall
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def make_inputs(root: Path) -> dict[str, Any]:
    """Every input of build_run_report (but run_name and out_dir), all present."""
    root.mkdir(parents=True, exist_ok=True)
    gt, images = write_dataset(root)
    return {
        "metrics_log": write_metrics_log(root / "metrics.jsonl"),
        "metrics": write_json(
            root / "metrics.json", {"bbox": coco_stats(0.0), "segm": coco_stats(0.01)}
        ),
        "predictions": write_json(root / "predictions.json", predictions_for(gt)),
        "annotations": gt,
        "images": images,
        "per_category_csv": write_per_category(root / "per_category.csv"),
        "pr_curves_csv": write_pr_curves(root / "pr_curves.csv"),
        "provenance": write_json(
            root / "provenance.json",
            {
                "git_commit": "0123abc",
                "config": {"solver": {"lr": 0.02, "steps": [800]}},
                "versions": {"torch": "2.14.1"},
                "hardware": "8x H100 | NVLink",
            },
        ),
    }
