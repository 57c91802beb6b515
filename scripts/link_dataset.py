#!/usr/bin/env python3
"""Check an existing dataset split (a folder source) and link it into the pipeline's layout.

The images folder and the annotation file must exist and be readable; they are then linked,
never copied, at the given link paths (data/<dataset>/<split> and
data/<dataset>/annotations/<split>.json in the workflow). Example:

    python scripts/link_dataset.py --images /shared/coco/val2017 \\
        --annotations /shared/coco/annotations/instances_val2017.json \\
        --images-link data/coco/val --annotations-link data/coco/annotations/val.json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.data.link import link_split


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--images", type=Path, required=True, help="the split's images folder")
    parser.add_argument("--annotations", type=Path, required=True, help="its COCO JSON file")
    parser.add_argument("--images-link", type=Path, required=True, help="link to the folder")
    parser.add_argument("--annotations-link", type=Path, required=True, help="link to the file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    link_split(args.images, args.annotations, args.images_link, args.annotations_link)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
