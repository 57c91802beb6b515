"""Draw inference results over their images: one PNG per image, and a sample grid.

The second half of inference on a folder of images (the first is scripts/predict.py with
--image-index):

    python scripts/predict.py --config config.yaml --run r50_fpn_1x \\
        --model results/r50_fpn_1x/train/model_final.pth --images photos/ \\
        --out out/predictions.json --image-index out/images.json
    python scripts/overlay.py --predictions out/predictions.json --index out/images.json \\
        --images photos/ --out-dir out/overlays --sample out/sample.png
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.report.figures import save_figure
from maskrcnn_pipeline.report.overlays import sample_figure, write_overlays
from maskrcnn_pipeline.workflow.schema import schema_default

logger = logging.getLogger("overlay")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: the results, what they refer to, and where the PNGs go."""
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--predictions",
        required=True,
        type=Path,
        metavar="JSON",
        help="COCO results (boxes, RLE masks) written by scripts/predict.py",
    )
    parser.add_argument(
        "--index",
        required=True,
        type=Path,
        metavar="JSON",
        help="image index written by predict.py --image-index (or any COCO annotation file "
        "of the same images): image ids, file names and category names",
    )
    parser.add_argument(
        "--images", required=True, type=Path, metavar="DIR", help="folder holding the images"
    )
    parser.add_argument(
        "--out-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder for the overlays, one <image name>.png per image (created if needed)",
    )
    parser.add_argument(
        "--sample",
        type=Path,
        metavar="PNG",
        help="also write a grid of a fixed sample of the images (chosen by image id) here",
    )
    parser.add_argument(
        "--num-examples",
        type=int,
        default=schema_default("report", "num_examples"),
        metavar="N",
        help="images in the --sample grid (default: %(default)s, the schema's report.num_examples)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=schema_default("report", "score_threshold"),
        metavar="SCORE",
        help="draw only detections scoring at least this, 0 to 1 (default: %(default)s, the "
        "schema's report.score_threshold)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Draw every overlay, then the sample grid if asked for."""
    args = parse_args(argv)
    if args.sample is not None and args.num_examples < 1:
        raise PipelineError(
            f"--num-examples must be 1 or more with --sample, got {args.num_examples}"
        )
    written = write_overlays(
        predictions=args.predictions,
        index=args.index,
        images=args.images,
        out_dir=args.out_dir,
        score_threshold=args.score_threshold,
    )
    if args.sample is not None:
        figure = sample_figure(
            predictions=args.predictions,
            index=args.index,
            images=args.images,
            num_examples=args.num_examples,
            score_threshold=args.score_threshold,
        )
        save_figure(figure, args.sample)
    logger.info("wrote %d overlays into %s", len(written), args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
