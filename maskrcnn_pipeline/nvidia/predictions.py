"""NVIDIA's COCO results (bbox.json + segm.json) as our predictions.json.

test_net.py's evaluation (maskrcnn_benchmark/data/datasets/evaluation/coco/coco_eval.py)
writes the boxes and the masks of the same detections to two files, in the same order: for
each image, each detection, once in each. Our predictions.json holds one record per detection
with both, which the evaluate and report rules read for either engine. The order is checked,
detection by detection, rather than trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from maskrcnn_pipeline.errors import PipelineError

#: What must agree between a detection's two records.
_SAME = ("image_id", "category_id")


def merge_results(
    boxes: Sequence[dict[str, Any]],
    masks: Sequence[dict[str, Any]],
    *,
    sources: tuple[str, str] = ("bbox.json", "segm.json"),
) -> list[dict[str, Any]]:
    """One record per detection: image_id, category_id, score, bbox (xywh), segmentation (RLE)."""
    if len(boxes) != len(masks):
        raise PipelineError(
            f"{sources[0]} has {len(boxes)} detections and {sources[1]} {len(masks)}: they must "
            "be the same detections; run the evaluation again"
        )
    merged = []
    for index, (box, mask) in enumerate(zip(boxes, masks, strict=True)):
        for record, source, key in ((box, sources[0], "bbox"), (mask, sources[1], "segmentation")):
            missing = [name for name in (*_SAME, "score", key) if name not in record]
            if missing:
                raise PipelineError(f"{source}, detection {index}: no {', '.join(missing)}")
        same = all(box[name] == mask[name] for name in _SAME)
        if not same or not math.isclose(box["score"], mask["score"], abs_tol=1e-6):
            raise PipelineError(
                f"detection {index} differs between {sources[0]} ({_describe(box)}) and "
                f"{sources[1]} ({_describe(mask)}): the files are not in the same order"
            )
        merged.append(
            {
                "image_id": box["image_id"],
                "category_id": box["category_id"],
                "score": box["score"],
                "bbox": box["bbox"],
                "segmentation": mask["segmentation"],
            }
        )
    return merged


def _describe(record: dict[str, Any]) -> str:
    return ", ".join(f"{name} {record.get(name)!r}" for name in (*_SAME, "score"))
