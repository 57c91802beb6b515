"""Compare runs side by side: comparison.csv/.html/.md and charts; see report.comparison.

Writes comparison.csv (one row per run), comparison.html, comparison.md and ap.png,
ap_by_size.png, speed.png, losses.png, ap_vs_iteration.png into --out-dir.

Thin by design: the Snakemake rule passes every run of the config; by hand, name the runs
and their files:

    python scripts/compare.py --out-dir results/report \\
        --run r50 results/r50/eval/val/metrics.json results/r50/train/metrics.jsonl \\
        --run-info '{"r50": {"dataset": "coco2017", "gpus": 8}}'
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import json_option, parser_from_doc, run_cli
from maskrcnn_pipeline.report.comparison import INFO_COLUMNS, RunInputs, build_comparison
from maskrcnn_pipeline.report.figures import add_placeholders_argument
from maskrcnn_pipeline.workflow.schema import schema_default

logger = logging.getLogger("compare")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; every run is one --run with its name and two files."""
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--out-dir", required=True, type=Path, metavar="DIR", help="folder to write into"
    )
    parser.add_argument(
        "--run",
        required=True,
        action="append",
        nargs=3,
        metavar=("NAME", "METRICS_JSON", "METRICS_JSONL"),
        help="a run: its name, final COCO stats (eval/<split>/metrics.json) and training log "
        "(train/metrics.jsonl); repeat for every run, in the order to show them",
    )
    parser.add_argument(
        "--run-info",
        default="{}",
        metavar="JSON",
        help=f"JSON object: run name -> {{{', '.join(INFO_COLUMNS)}}} as in the config; "
        "'dataset' decides which reference lines apply (default: none known)",
    )
    parser.add_argument(
        "--references",
        metavar="JSON",
        help="JSON list of published results [{label, datasets, bbox, segm}] drawn as "
        "reference lines for runs on those datasets (default: the schema's "
        "report.references, NVIDIA's COCO 2017 numbers)",
    )
    add_placeholders_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Read the runs and write the comparison."""
    args = parse_args(argv)
    info = json_option(args.run_info, "--run-info", dict)
    references = (
        schema_default("report", "references")
        if args.references is None
        else json_option(args.references, "--references", list)
    )
    runs = [
        RunInputs(name, Path(metrics), Path(log), info.get(name, {}))
        for name, metrics, log in args.run
    ]
    written = build_comparison(
        out_dir=args.out_dir, runs=runs, references=references, placeholders=args.placeholders
    )
    logger.info("wrote %d files into %s", len(written), args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
