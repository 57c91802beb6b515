#!/usr/bin/env python3
"""Write the prepared copy of a split's annotations (data/prepare.py), which every later stage
reads, and the changes it made; the user's file is never modified. Drops placeholder
categories, makes crowd objects instances (--crowd instances, for CVAT), turns labelme
rectangles into polygons, fills missing image sizes from the files and recomputes areas that
disagree with their masks. Example:

    python scripts/prepare_dataset.py --images data/mine/train \\
        --annotations /data/export/annotations/instances_train.json --crowd instances \\
        --out data/mine/annotations/train.json --changes data/mine/annotations/train.changes.json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.data.formats import BOX_ONLY_CHOICES, CROWD_CHOICES, PLACEHOLDER_CHOICES
from maskrcnn_pipeline.data.prepare import PrepareSettings, prepare_split
from maskrcnn_pipeline.fileio import write_json_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--images", type=Path, required=True, help="the split's images folder")
    parser.add_argument("--annotations", type=Path, required=True, help="its COCO JSON file")
    parser.add_argument(
        "--original",
        help="the annotation file as the user knows it, for messages (default: --annotations)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the prepared copy")
    parser.add_argument("--changes", type=Path, required=True, help="JSON of the changes made")
    defaults = PrepareSettings()
    parser.add_argument("--crowd", choices=CROWD_CHOICES, default=defaults.crowd)
    parser.add_argument("--box-only", choices=BOX_ONLY_CHOICES, default=defaults.box_only)
    parser.add_argument(
        "--placeholder-categories",
        choices=PLACEHOLDER_CHOICES,
        default=defaults.placeholder_categories,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = PrepareSettings(args.crowd, args.box_only, args.placeholder_categories)
    changes = prepare_split(args.annotations, args.images, args.out, settings)
    original = args.original or str(args.annotations)
    write_json_atomic(
        args.changes, {"original": original, "settings": vars(settings), "changes": changes}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
