"""Generate the synthetic shapes dataset (COCO format) used by the demo and the tests.

A thin command-line wrapper around
:func:`maskrcnn_pipeline.data.synthetic.generate_synthetic_dataset`, so that the data rule and
a user at a shell run the same code. Writes ``OUT/{train,val}/*.jpg`` and
``OUT/annotations/{train,val}.json``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset
from maskrcnn_pipeline.workflow.schema import schema_default

log = logging.getLogger("generate_synthetic")

#: The options, named as the config's keys under datasets.<name>.synthetic.
OPTIONS = {
    "seed": "random seed (same seed, same bytes)",
    "train_images": "images in the train split",
    "val_images": "images in the val split",
    "image_size": "image width = height, px",
    "min_objects": "fewest objects per image",
    "max_objects": "most objects per image",
    "min_object_size": "smallest object (circumcircle), px",
    "max_object_size": "largest object (circumcircle), px",
}


def build_parser() -> argparse.ArgumentParser:
    """The options; each default is the schema's (datasets.<name>.synthetic), shown in --help."""
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="ROOT",
        help="dataset root; existing train/ and val/ splits in it are replaced",
    )
    parser.add_argument(
        "--annotations-dir",
        default="annotations",
        metavar="DIR",
        help="folder under ROOT for the annotation files (default: %(default)s)",
    )
    for key, text in OPTIONS.items():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            type=int,
            metavar="N",
            default=schema_default("$defs", "synthetic", key),
            help=f"{text} (default: %(default)s)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the dataset and log what was written."""
    args = build_parser().parse_args(argv)
    splits = {"train": args.train_images, "val": args.val_images}
    counts = generate_synthetic_dataset(
        args.out,
        splits=splits,
        image_size=args.image_size,
        seed=args.seed,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        min_object_size=args.min_object_size,
        max_object_size=args.max_object_size,
        annotations_dir=args.annotations_dir,
    )
    for split, objects in counts.items():
        log.info(
            "wrote %s: %d images, %d objects -> %s, %s",
            split,
            splits[split],
            objects,
            args.out / split,
            args.out / args.annotations_dir / f"{split}.json",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
