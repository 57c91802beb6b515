#!/usr/bin/env python3
"""Write a dataset's record: its categories with their training labels, the model's class
count and each split's annotation checksum, what the rules after validation read (so that
editing the checks reruns only validation). Example:

    python scripts/record_dataset.py --dataset coco2017 --out data/coco2017/dataset.json \\
        --split train data/coco2017/train2017 data/coco2017/annotations/instances_train2017.json \\
        --split val data/coco2017/val2017 data/coco2017/annotations/instances_val2017.json
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import add_split_option, parser_from_doc, run_cli
from maskrcnn_pipeline.data.dataset_record import write_dataset_record

log = logging.getLogger("record_dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--dataset", required=True, help="the dataset's name")
    add_split_option(
        parser, help="a split: images folder (unused) and annotation JSON (repeat for every split)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="dataset.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    splits = {name: annotations for name, _images, annotations in args.split}
    record = write_dataset_record(args.dataset, splits, args.out)
    log.info("%s: %d categories", args.out, record["num_categories"])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
