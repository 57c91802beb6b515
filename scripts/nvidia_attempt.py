#!/usr/bin/env python3
"""Prepare train/nvidia/ for an attempt of NVIDIA's training (run by train_nvidia first).

Keeps the previous attempt's dllogger file as <file>.<start time> (nvidia_metrics reads them
all) and drops a last_checkpoint naming a file that is gone, so a forced rerun starts over
instead of failing; see maskrcnn_pipeline.nvidia.attempts. By hand:

    python scripts/nvidia_attempt.py --train-dir results/r/train/nvidia \\
        --summary results/r/train/nvidia/dllogger.json
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.nvidia.attempts import prepare_attempt


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--train-dir", type=Path, required=True, metavar="DIR", help="their OUTPUT_DIR"
    )
    parser.add_argument(
        "--summary", type=Path, required=True, metavar="FILE", help="their --json-summary"
    )
    args = parser.parse_args(argv)
    prepare_attempt(args.train_dir, args.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
