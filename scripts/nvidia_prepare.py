#!/usr/bin/env python3
"""Prepare a run of engine nvidia: its dataset catalog, its class count, its checkpoints.

Writes the paths_catalog.py that NVIDIA's train_net.py and test_net.py load as PATHS_CATALOG:
every split registered as coco_<split>, relative to the dataset folder that the jobs bind at
/datasets/data. Stops when --num-classes is not the dataset's categories + 1 (from the
dataset's record, data/<dataset>/dataset.json, or its full validation report). Moves the
training folder aside when its checkpoints were trained with another command or other
annotations, so NVIDIA's trainer cannot resume them. Example:

    python scripts/nvidia_prepare.py --run r50_nvidia --data-dir data/coco2017 \\
        --split train data/coco2017/train2017 data/coco2017/annotations/instances_train2017.json \\
        --split val data/coco2017/val2017 data/coco2017/annotations/instances_val2017.json \\
        --validation data/coco2017/dataset.json --num-classes 81 --train-split train \\
        --command '["torchrun", "..."]' --train-dir results/r50_nvidia/train/nvidia \\
        --catalog results/r50_nvidia/train/nvidia_paths_catalog.py
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import add_split_option, json_option, parser_from_doc, run_cli
from maskrcnn_pipeline.nvidia.catalog import (
    catalog_entries,
    check_num_classes,
    fingerprint,
    load_report,
    set_aside_stale_checkpoints,
    write_catalog,
)

log = logging.getLogger("nvidia_prepare")


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--run", required=True, help="the run's name (for messages)")
    parser.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="data/<dataset>: the folder bound at /datasets/data in NVIDIA's image",
    )
    add_split_option(
        parser, help="a split: images folder and annotation JSON inside --data-dir (repeat)"
    )
    parser.add_argument(
        "--validation",
        type=Path,
        required=True,
        metavar="FILE",
        help="the dataset's record (dataset.json) or its validation report",
    )
    parser.add_argument(
        "--num-classes", type=int, required=True, metavar="N", help="MODEL.ROI_BOX_HEAD.NUM_CLASSES"
    )
    parser.add_argument("--train-split", required=True, metavar="NAME", help="the training split")
    parser.add_argument(
        "--command",
        required=True,
        metavar="JSON",
        help="the training's command line as a JSON list (what its checkpoints depend on)",
    )
    parser.add_argument(
        "--train-dir", type=Path, required=True, metavar="DIR", help="NVIDIA's OUTPUT_DIR"
    )
    parser.add_argument(
        "--catalog", type=Path, required=True, metavar="FILE", help="paths_catalog.py to write"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = json_option(args.command, "--command", list)
    report = load_report(args.validation)
    dataset = Path(args.data_dir).name
    check_num_classes(args.run, dataset, report, args.num_classes)
    splits = {name: {"images": images, "annotations": ann} for name, images, ann in args.split}
    entries = catalog_entries(args.data_dir, splits)
    write_catalog(args.catalog, args.run, dataset, entries)
    log.info("wrote %s: %s", args.catalog, ", ".join(sorted(entries)))
    current = fingerprint(command, report, args.train_split)
    if not set_aside_stale_checkpoints(args.train_dir, current):
        log.info("%s: checkpoints (if any) belong to this run's settings", args.train_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
