#!/usr/bin/env python3
"""Write a dataset's record (verdict, categories, annotation checksums) from its validation
report: what the rules after validation read, so that editing the checks reruns only them.

    python scripts/record_dataset.py --validation data/coco2017/validation.json \\
        --out data/coco2017/dataset.json
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.data.dataset_record import write_dataset_record

log = logging.getLogger("record_dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--validation", type=Path, required=True, metavar="REPORT", help="validation.json"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="dataset.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    record = write_dataset_record(args.validation, args.out)
    log.info("%s: %d categories", args.out, record["num_categories"])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
