"""Evaluate COCO-format detections/masks against COCO ground truth; write metrics.json.

Works on any COCO annotation + results pair, inside or outside the workflow:

    python scripts/evaluate.py --annotations GT.json --results RESULTS.json --out metrics.json

metrics.json holds, per iou type, the 12 COCO stats AP, AP50, AP75, APs, APm, APl, AR1, AR10,
AR100, ARs, ARm, ARl. Exit status: 0 on success, 2 on bad input (the message names the file
and the fix).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.evaluation import (
    BACKENDS,
    IOU_TYPES,
    evaluate_coco,
    write_metrics,
    write_per_category_csv,
    write_pr_curves_csv,
)
from maskrcnn_pipeline.workflow.schema import schema_default


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--annotations",
        required=True,
        type=Path,
        metavar="GT.json",
        help="COCO ground-truth annotation file (images, annotations, categories)",
    )
    parser.add_argument(
        "--results",
        required=True,
        type=Path,
        metavar="RESULTS.json",
        help="COCO results file: a list of {image_id, category_id, score, bbox and/or "
        "segmentation (RLE)}",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="metrics.json",
        help='where to write {"bbox": {AP: ..., ...}, "segm": {...}} (atomically)',
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=schema_default("evaluation", "backend"),
        help="evaluation library; both give the same numbers (default: %(default)s, faster)",
    )
    parser.add_argument(
        "--iou-types",
        nargs="+",
        choices=IOU_TYPES,
        metavar="TYPE",
        help=f"iou types to evaluate, from {{{', '.join(IOU_TYPES)}}} (default: those the "
        "results carry)",
    )
    parser.add_argument(
        "--per-category-csv",
        type=Path,
        metavar="PATH",
        help="also write per-category AP, AP50, AP75 "
        "(columns: iou_type, category_id, category_name, AP, AP50, AP75)",
    )
    parser.add_argument(
        "--pr-curves-csv",
        type=Path,
        metavar="PATH",
        help="also write category-averaged precision/recall curves at IoU 0.5 and 0.75 "
        "(columns: iou_type, iou_threshold, recall, precision)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = evaluate_coco(
        args.annotations, args.results, backend=args.backend, iou_types=args.iou_types
    )
    write_metrics(result, args.out)
    if args.per_category_csv:
        write_per_category_csv(result, args.per_category_csv)
    if args.pr_curves_csv:
        write_pr_curves_csv(result, args.pr_curves_csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
