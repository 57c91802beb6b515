#!/usr/bin/env python3
"""Train a Mask R-CNN run (resumes from its last checkpoint when there is one).

One process per GPU of the run (or cpu_processes on the CPU): with more than one, this
script starts torchrun on itself. Settings come either as the JSON the Snakemake rule passes
(--settings: what can change the model; --operational: threads, log and checkpoint periods,
DataLoader workers ...) or from a config file and a run name (--config/--run, validated). A
checkpoint is resumed only if the same --settings wrote it.
SIGTERM/SIGUSR1 save a checkpoint and exit with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import run_cli
from maskrcnn_pipeline.workflow.params import merge_operational
from maskrcnn_pipeline.workflow.settings_args import (
    add_settings_arguments,
    resolve_split_settings,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    add_settings_arguments(parser, kind="train")
    parser.add_argument("--images", type=Path, required=True, help="training images folder")
    parser.add_argument(
        "--annotations", type=Path, required=True, help="training COCO annotation JSON"
    )
    parser.add_argument("--eval-images", type=Path, help="eval split images (for eval_period > 0)")
    parser.add_argument(
        "--eval-annotations", type=Path, help="eval split annotation JSON (for eval_period > 0)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        required=True,
        help="writes model_final.pth, metrics.jsonl, provenance.json; checkpoints/ inside",
    )
    return parser.parse_args(argv)


def worker_args(args: argparse.Namespace, settings: dict, operational: dict) -> list[str]:
    """The arguments of each torchrun worker: the resolved settings and the same paths."""
    paths = {
        "--images": args.images,
        "--annotations": args.annotations,
        "--eval-images": args.eval_images,
        "--eval-annotations": args.eval_annotations,
        "--out-dir": args.out_dir,
    }
    arguments = ["--settings", json.dumps(settings), "--operational", json.dumps(operational)]
    for flag, value in paths.items():
        if value is not None:
            arguments += [flag, str(value)]
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params, operational = resolve_split_settings(args, kind="train")
    settings = merge_operational(params, operational)
    from maskrcnn_pipeline.train import launch

    if not launch.under_torchrun(os.environ):
        launch.check_gpus(settings, launch.visible_gpus())
        if launch.needs_torchrun(settings):
            command = launch.torchrun_command(
                settings, __file__, worker_args(args, params, operational), os.environ
            )
            return launch.run_forwarding_signals(command)

    from maskrcnn_pipeline.train.run import TrainPaths, train

    paths = TrainPaths(
        args.images, args.annotations, args.out_dir, args.eval_images, args.eval_annotations
    )
    train(settings, paths, resume_settings=params)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
