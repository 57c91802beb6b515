"""Write one run's report (figures, metrics.csv, summary.md); see maskrcnn_pipeline.report.

The per-run report: training curves, evaluation figures, example predictions, metrics.csv,
metrics.html and summary.md. An optional input that is not given (or does not exist) skips
its figure, and summary.md says so.

Thin by design: every option maps to an argument of build_run_report, so the Snakemake rule,
a user at the shell and the tests all drive the same code.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.report.figures import add_placeholders_argument
from maskrcnn_pipeline.report.run_report import build_run_report
from maskrcnn_pipeline.workflow.schema import schema_default

logger = logging.getLogger("report")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; optional inputs default to None, which skips their figure."""
    parser = parser_from_doc(__doc__)
    required = parser.add_argument_group("required")
    required.add_argument(
        "--run-name", required=True, metavar="NAME", help="run name shown in summary.md"
    )
    required.add_argument(
        "--out-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder to write the report into (created if needed)",
    )
    required.add_argument(
        "--metrics-log",
        required=True,
        type=Path,
        metavar="JSONL",
        help="training log, train/metrics.jsonl (one JSON object per line)",
    )
    required.add_argument(
        "--metrics",
        required=True,
        type=Path,
        metavar="JSON",
        help="final COCO stats, eval/<split>/metrics.json",
    )
    optional = parser.add_argument_group("optional inputs")
    optional.add_argument(
        "--predictions",
        type=Path,
        metavar="JSON",
        help="COCO results with RLE masks, eval/<split>/predictions.json; "
        "with --annotations and --images, for predictions.png",
    )
    optional.add_argument(
        "--annotations",
        type=Path,
        metavar="JSON",
        help="ground-truth COCO annotation file of the evaluated split "
        "(category names, image file names, outlines)",
    )
    optional.add_argument(
        "--images", type=Path, metavar="DIR", help="folder holding the split's images"
    )
    optional.add_argument(
        "--per-category-csv",
        type=Path,
        metavar="CSV",
        help="eval/<split>/per_category.csv, for per_category_ap.png",
    )
    optional.add_argument(
        "--pr-curves-csv",
        type=Path,
        metavar="CSV",
        help="eval/<split>/pr_curves.csv, for pr_curves.png",
    )
    optional.add_argument(
        "--provenance",
        type=Path,
        metavar="JSON",
        help="provenance.json, rendered as a section of summary.md",
    )
    drawing = parser.add_argument_group("drawing")
    drawing.add_argument(
        "--num-examples",
        type=int,
        default=schema_default("report", "num_examples"),
        metavar="N",
        help="images in predictions.png, a fixed sample chosen by image id; "
        "0 skips the figure (default: %(default)s, the schema's report.num_examples)",
    )
    drawing.add_argument(
        "--score-threshold",
        type=float,
        default=schema_default("report", "score_threshold"),
        metavar="SCORE",
        help="draw only detections scoring at least this, 0 to 1 (default: %(default)s, the "
        "schema's report.score_threshold)",
    )
    add_placeholders_argument(drawing)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the report and log where it went."""
    args = parse_args(argv)
    written = build_run_report(**vars(args))
    logger.info("wrote %d files into %s", len(written), args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
