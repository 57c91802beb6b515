#!/usr/bin/env python3
"""Train a Mask R-CNN run (resumes from its last checkpoint when there is one).

Settings come either as the JSON the Snakemake rule passes (--settings) or from a config
file and a run name (--config/--run), validated against schemas/ either way.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import run_cli
from maskrcnn_pipeline.settings_args import add_settings_arguments, resolve_settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add_settings_arguments(parser, kind="train")
    parser.add_argument("--images", type=Path, required=True, help="training images folder")
    parser.add_argument(
        "--annotations", type=Path, required=True, help="training COCO annotation JSON"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        required=True,
        help="writes model_final.pth, metrics.jsonl, provenance.json; checkpoints/ inside",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from maskrcnn_pipeline.training import TrainPaths, train

    train(
        resolve_settings(args, kind="train"),
        TrainPaths(args.images, args.annotations, args.out_dir),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
