#!/usr/bin/env python3
"""Check a COCO-format dataset (annotations and image files) and write a validation report.

Checks required keys and types, unique ids, that every annotation's image and category exist,
boxes inside their image with positive size, polygons (>= 3 points, even coordinates), RLE
sizes, iscrowd in {0, 1}, and that every image file exists, is readable and has the declared
width and height. With errors, exits non-zero, prints the counts per kind with the first
examples, and writes the report to REPORT.errors.json instead of REPORT. Examples:

    python scripts/validate_dataset.py --images data/mine/train --annotations train.json \\
        --out validation.json
    python scripts/validate_dataset.py --dataset coco2017 --out data/coco2017/validation.json \\
        --split train data/coco2017/train2017 data/coco2017/annotations/instances_train2017.json \\
        --split val data/coco2017/val2017 data/coco2017/annotations/instances_val2017.json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import add_split_option, parser_from_doc, run_cli
from maskrcnn_pipeline.data.validation import (
    Split,
    ValidationSettings,
    validate_dataset,
    write_report,
)
from maskrcnn_pipeline.workflow.schema import schema_default


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--out", type=Path, required=True, metavar="REPORT", help="report JSON")
    data = parser.add_argument_group("what to check (--images + --annotations, or --split ...)")
    data.add_argument("--images", type=Path, metavar="DIR", help="images folder of one split")
    data.add_argument("--annotations", type=Path, metavar="FILE", help="its annotation JSON")
    add_split_option(
        data,
        help="a named split: images folder and annotation JSON (repeat for every split)",
        required=False,
    )
    data.add_argument(
        "--dataset", default="dataset", help="dataset name for the report (default: dataset)"
    )
    data.add_argument(
        "--original",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "DIR", "FILE"),
        help="the user's own images folder and annotation file of a split, named in messages",
    )
    data.add_argument(
        "--changes",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "FILE"),
        help="a split's changes file from scripts/prepare_dataset.py (its settings and counts)",
    )
    data.add_argument(
        "--train-split",
        action="append",
        default=[],
        metavar="NAME",
        help="a split a run trains on: every category needs a trainable instance there",
    )
    how = parser.add_argument_group("checks")
    how.add_argument(
        "--bbox-tolerance",
        type=float,
        default=schema_default("$defs", "validation", "bbox_tolerance"),
        metavar="PX",
        help="pixels a box may extend beyond its image (default: %(default)s)",
    )
    how.add_argument(
        "--decode-images",
        action="store_true",
        help="decode every image fully, as training does (catches damage inside a file; slow) "
        "instead of its header and last bytes (truncated JPEGs and PNGs are caught either way)",
    )
    how.add_argument(
        "--examples",
        type=int,
        default=5,
        metavar="N",
        help="examples kept per kind of problem (default: %(default)s)",
    )
    how.add_argument(
        "--workers",
        type=int,
        default=4,
        metavar="N",
        help="threads reading image files (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    originals = {name: (Path(images), Path(file)) for name, images, file in args.original}
    changes = {name: Path(file) for name, file in args.changes}
    splits = [
        Split(
            name,
            Path(images),
            Path(annotations),
            *originals.get(name, (None, None)),
            changes=changes.get(name),
            trains=name in args.train_split,
        )
        for name, images, annotations in args.split
    ]
    if (args.images is None) != (args.annotations is None):
        parser.error("--images and --annotations go together")
    if args.images is not None:
        splits.append(Split("split", args.images, args.annotations))
    if not splits:
        parser.error("give --images and --annotations, or --split NAME DIR FILE")
    settings = ValidationSettings(
        bbox_tolerance=args.bbox_tolerance,
        decode_images=args.decode_images,
        max_examples=args.examples,
        workers=args.workers,
    )
    write_report(validate_dataset(args.dataset, splits, settings), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
