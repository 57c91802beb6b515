#!/usr/bin/env python3
"""Turn NVIDIA's evaluation output (test_net.py) into the run's predictions.json.

test_net.py writes the detections of one dataset to <eval-dir>/inference/<dataset name>/
bbox.json and segm.json (COCO results, boxes and masks of the same detections in the same
order) and logs its own box and mask AP to <eval-dir>/dllogger.json. This writes
predictions.json (one record per detection with bbox and RLE segmentation, what the evaluate
and report rules read for either engine) and a summary of what NVIDIA's code reported (AP,
inference time and images/s), to set beside our evaluation of the same detections. Example:

    python scripts/nvidia_predictions.py --eval-dir results/r50_nvidia/eval/val/nvidia \\
        --dataset-name coco_val --out results/r50_nvidia/eval/val/predictions.json \\
        --summary results/r50_nvidia/eval/val/nvidia_eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import read_json, write_json_atomic, write_text_atomic
from maskrcnn_pipeline.nvidia.logs import final_ap, read_dllogger, summary
from maskrcnn_pipeline.nvidia.predictions import merge_results

log = logging.getLogger("nvidia_predictions")


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--eval-dir", type=Path, required=True, metavar="DIR", help="test_net.py's OUTPUT_DIR"
    )
    parser.add_argument(
        "--dataset-name",
        required=True,
        metavar="NAME",
        help="the evaluated dataset's catalog name (its inference/ subfolder), e.g. coco_val",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="predictions.json to write"
    )
    parser.add_argument(
        "--summary", type=Path, metavar="FILE", help="JSON of NVIDIA's own figures to write"
    )
    return parser


def results(path: Path) -> list[dict]:
    data = read_json(path)
    if not isinstance(data, list):
        raise PipelineError(f"{path}: expected a COCO results list")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = args.eval_dir / "inference" / args.dataset_name
    boxes, masks = folder / "bbox.json", folder / "segm.json"
    merged = merge_results(results(boxes), results(masks), sources=(str(boxes), str(masks)))
    # one detection per line: diffable, and as compact as our predict's output
    text = "[\n" + ",\n".join(json.dumps(record) for record in merged) + "\n]\n"
    write_text_atomic(args.out, text if merged else "[]\n")
    log.info("wrote %s: %d detections", args.out, len(merged))
    if args.summary:
        entries = read_dllogger([args.eval_dir / "dllogger.json"])
        write_json_atomic(
            args.summary,
            {
                "source": "NVIDIA's test_net.py (dllogger)",
                "reported": final_ap(entries),
                "summary": summary(entries),
                "detections": len(merged),
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
