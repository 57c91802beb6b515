#!/usr/bin/env python3
"""Run a trained model over a split (or any folder of images) and write COCO results JSON.

With --annotations, the images and their ids come from the annotation file (for
evaluation); without, every .jpg/.jpeg/.png in --images is predicted and numbered 1..N in
file-name order, and --image-index writes that numbering (a COCO file without annotations),
which scripts/overlay.py reads to draw the results; there, an unreadable image is skipped and
listed with its reason under the index's "skipped", and the others are predicted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.workflow.settings_args import add_settings_arguments, resolve_settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    add_settings_arguments(parser, kind="predict")
    parser.add_argument("--model", type=Path, required=True, help="model_final.pth of a run")
    parser.add_argument("--images", type=Path, required=True, help="images folder")
    parser.add_argument("--annotations", type=Path, help="COCO annotation JSON of the images")
    parser.add_argument("--out", type=Path, required=True, help="COCO results JSON to write")
    parser.add_argument(
        "--image-index",
        type=Path,
        help="also write the images (id, file name, size) and categories as a COCO file "
        "without annotations, e.g. images.json",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="image-decoding processes (default: 2)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from maskrcnn_pipeline.inference.predict import (
        images_from_annotations,
        images_from_folder,
        predict,
    )

    if args.annotations is not None:
        entries = images_from_annotations(args.images, args.annotations)
    else:
        entries = images_from_folder(args.images)
    predict(
        args.model,
        entries,
        resolve_settings(args, kind="predict"),
        args.out,
        workers=args.workers,
        index_out=args.image_index,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
