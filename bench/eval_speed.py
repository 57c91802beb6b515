"""Benchmark: the project's COCO evaluation against plain pycocotools, in one process.

Both sides do the whole job end to end: read ground truth and results from JSON files,
evaluate bbox and segm (segm without the detections' boxes, see evaluation.inputs), write
metrics.json. The data is a generated val2017-sized set (5000 images, ~36k instances over
80 categories, 100 detections per image with RLE masks); ``--images`` shrinks it.
Goal: >= 4x faster than pycocotools, with the 24 numbers within 1e-9.

    python bench/eval_speed.py [--images 500]

The last line printed is one JSON object with the times, the ratio and the difference.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.cli import run_cli
from maskrcnn_pipeline.evaluation import STAT_NAMES, evaluate_coco, write_metrics
from maskrcnn_pipeline.fileio import write_json_atomic
from tests.support.fake_coco import write_fake_coco

logger = logging.getLogger("bench.eval_speed")
IOU_TYPES = ("bbox", "segm")
GOAL_SPEEDUP, GOAL_MAX_DIFF = 4.0, 1e-9


def project_path(annotations: Path, results: Path, out: Path) -> dict[str, dict[str, float]]:
    """What the pipeline's evaluate rule runs (default backend)."""
    result = evaluate_coco(annotations, results, iou_types=IOU_TYPES)
    write_metrics(result, out)
    return result.stats


def pycocotools_path(annotations: Path, results: Path, out: Path) -> dict[str, dict[str, float]]:
    """The baseline, as detectron2 drives pycocotools: load once, strip segm boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with redirect_stdout(sys.stderr):  # keep stdout for the result line
        gt = COCO(str(annotations))
        detections = json.loads(results.read_text())
        stats = {}
        for iou_type in IOU_TYPES:
            drop = {"bbox"} if iou_type == "segm" else set()
            records = [{k: v for k, v in d.items() if k not in drop} for d in detections]
            evaluator = COCOeval(gt, gt.loadRes(records), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            stats[iou_type] = dict(zip(STAT_NAMES, evaluator.stats.tolist(), strict=True))
            del evaluator, records
    write_json_atomic(out, stats)
    return stats


def timed(
    run: Callable[[Path, Path, Path], dict[str, dict[str, float]]], *paths: Path
) -> tuple[float, dict[str, dict[str, float]]]:
    gc.collect()
    start = time.perf_counter()
    stats = run(*paths)
    return time.perf_counter() - start, stats


def max_abs_diff(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> float:
    return max(abs(a[t][name] - b[t][name]) for t in IOU_TYPES for name in STAT_NAMES)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images (default: %(default)s)")
    parser.add_argument("--categories", type=int, default=80, help="default: %(default)s")
    parser.add_argument(
        "--detections-per-image", type=int, default=100, help="default: %(default)s"
    )
    parser.add_argument("--seed", type=int, default=0, help="data seed (default: %(default)s)")
    parser.add_argument(
        "--workdir", type=Path, help="where to write the data (default: a temporary directory)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eval_speed.") as tmp:
        workdir = args.workdir or Path(tmp)
        start = time.perf_counter()
        gt, results = write_fake_coco(
            workdir,
            num_images=args.images,
            num_categories=args.categories,
            detections_per_image=args.detections_per_image,
            seed=args.seed,
        )
        logger.info("generated %s and %s in %.1f s", gt, results, time.perf_counter() - start)
        project_s, ours = timed(project_path, gt, results, workdir / "metrics.json")
        logger.info("project: %.1f s", project_s)
        baseline_s, reference = timed(pycocotools_path, gt, results, workdir / "reference.json")
        logger.info("pycocotools: %.1f s", baseline_s)
        sizes = _sizes(gt, results)
    diff = max_abs_diff(ours, reference)
    figures = {
        "benchmark": "eval_speed",
        **sizes,
        "project_s": round(project_s, 2),
        "pycocotools_s": round(baseline_s, 2),
        "speedup": round(baseline_s / project_s, 2),
        "max_abs_diff": diff,
        "goal_met": baseline_s / project_s >= GOAL_SPEEDUP and diff <= GOAL_MAX_DIFF,
    }
    print(json.dumps(figures))
    return 0


def _sizes(gt: Path, results: Path) -> dict[str, Any]:
    data = json.loads(gt.read_text())
    return {
        "images": len(data["images"]),
        "gt_instances": len(data["annotations"]),
        "categories": len(data["categories"]),
        "detections": len(json.loads(results.read_text())),
        "results_mb": round(results.stat().st_size / 2**20, 1),
    }


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
