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

from maskrcnn_pipeline.cli import run_cli
from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset

log = logging.getLogger("generate_synthetic")


def build_parser() -> argparse.ArgumentParser:
    """The options, each with its default shown in ``--help``."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        default=argparse.SUPPRESS,  # keeps "(default: None)" out of --help
        metavar="ROOT",
        help="dataset root; existing train/ and val/ splits in it are replaced",
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", default=0, help="random seed (same seed, same bytes)"
    )
    parser.add_argument(
        "--train-images", type=int, metavar="N", default=800, help="images in the train split"
    )
    parser.add_argument(
        "--val-images", type=int, metavar="N", default=100, help="images in the val split"
    )
    parser.add_argument(
        "--image-size", type=int, metavar="N", default=160, help="image width = height, px"
    )
    parser.add_argument(
        "--min-objects", type=int, metavar="N", default=1, help="fewest objects per image"
    )
    parser.add_argument(
        "--max-objects", type=int, metavar="N", default=4, help="most objects per image"
    )
    parser.add_argument(
        "--min-object-size",
        type=int,
        metavar="N",
        default=10,
        help="smallest object (circumcircle), px",
    )
    parser.add_argument(
        "--max-object-size",
        type=int,
        metavar="N",
        default=90,
        help="largest object (circumcircle), px",
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
    )
    for split, objects in counts.items():
        log.info(
            "wrote %s: %d images, %d objects -> %s, %s",
            split,
            splits[split],
            objects,
            args.out / split,
            args.out / "annotations" / f"{split}.json",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
