#!/usr/bin/env python3
"""Train a Mask R-CNN run (resumes from its last checkpoint when there is one).

One process per GPU of the run (or cpu_processes on the CPU): with more than one, this
script starts torchrun on itself. Settings come either as the JSON the Snakemake rule passes
(--settings: what can change the model; --operational: threads, log and checkpoint periods,
DataLoader workers ...) or from a config file and a run name (--config/--run, validated).
SIGTERM/SIGUSR1 save a checkpoint and exit with 128 + the signal number. A checkpoint is
resumed only when written with the same --settings, data and code (the import closure of
this script, as the train rule lists it); otherwise it is moved to checkpoints.previous.
A data error (an unreadable image) is recorded in <out-dir>/data_error.json; a retry
(--attempt 2 or more) that finds it fails at once instead of training into it again.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.train.data_error import before_attempt
from maskrcnn_pipeline.train.lock import run_lock
from maskrcnn_pipeline.workflow.code_inputs import code_digest, train_code
from maskrcnn_pipeline.workflow.params import merge_operational
from maskrcnn_pipeline.workflow.settings_args import (
    add_settings_arguments,
    resolve_split_settings,
    worker_arguments,
)

#: The workflow's folder: the training code's paths are relative to it.
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
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
        help="writes model_final.pth, metrics.jsonl, provenance.json; checkpoints/ inside "
        "(and rank_logs/, each process's output, when torchrun runs several)",
    )
    parser.add_argument(
        "--stop-when-orphaned",
        action="store_true",
        help="checkpoint and stop when the process that started this one is gone (the train "
        "rule sets it: a killed Snakemake leaves no training behind)",
    )
    parser.add_argument(
        "--attempt",
        type=int,
        default=1,
        help="Snakemake's attempt number (the train rule passes it): a retry does not train "
        "again into a data error the previous attempt stopped on (default: 1)",
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
    return worker_arguments(settings, operational, paths)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params, operational = resolve_split_settings(args, kind="train")
    settings = merge_operational(params, operational)
    from maskrcnn_pipeline.train import launch

    if launch.under_torchrun(os.environ):
        launch.mark_joined(os.environ)
        return run_training(args, params, operational)
    before_attempt(args.out_dir, args.attempt)
    launch.check_gpus(settings, launch.visible_gpus(), run=args.run)
    if args.stop_when_orphaned:
        from maskrcnn_pipeline.train.signals import stop_when_orphaned

        stop_when_orphaned()
    # One trainer per run folder: the launcher of the first node holds the lock for all of
    # this run's processes (the others' launchers run on other nodes, at the same time).
    lock = run_lock(args.out_dir) if launch.is_first_node(os.environ) else nullcontext()
    with lock:
        if launch.needs_torchrun(settings):
            command = launch.torchrun_command(
                settings,
                __file__,
                worker_args(args, params, operational),
                os.environ,
                log_dir=args.out_dir / launch.RANK_LOGS,
            )
            return launch.run_torchrun(settings, command, run=args.run)
        return run_training(args, params, operational)


def run_training(args: argparse.Namespace, params: dict, operational: dict) -> int:
    """Train in this process: ``params`` decide what a checkpoint must match."""
    from maskrcnn_pipeline.train.run import TrainPaths, train

    settings = merge_operational(params, operational)
    paths = TrainPaths(
        args.images, args.annotations, args.out_dir, args.eval_images, args.eval_annotations
    )
    # The code this process runs, as the train rule lists it: a checkpoint of other code
    # is set aside instead of resumed.
    digest = code_digest(ROOT, train_code(ROOT, settings))
    train(settings, paths, code_digest=digest, resume_settings=params)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
