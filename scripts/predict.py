#!/usr/bin/env python3
"""Run a trained model over a split (or any folder of images) and write COCO results JSON.

With --annotations, the images and their ids come from the annotation file (for
evaluation); without, every .jpg/.jpeg/.png in --images is predicted and numbered 1..N in
file-name order, and --image-index writes that numbering (a COCO file without annotations),
which scripts/overlay.py reads to draw the results; there, an unreadable image is skipped and
listed with its reason under the index's "skipped", and the others are predicted. Like
training, the images are shared by one process per GPU of the run (or cpu_processes on the
CPU): with more than one, this script starts torchrun on itself, and the first process
writes the merged results.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import parser_from_doc, run_cli
from maskrcnn_pipeline.workflow.params import merge_operational
from maskrcnn_pipeline.workflow.settings_args import (
    add_settings_arguments,
    resolve_split_settings,
    worker_arguments,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    add_settings_arguments(parser, kind="predict")
    parser.add_argument("--model", type=Path, required=True, help="model_final.pth of a run")
    parser.add_argument("--images", type=Path, required=True, help="images folder")
    parser.add_argument("--annotations", type=Path, help="COCO annotation JSON of the images")
    parser.add_argument("--out", type=Path, required=True, help="COCO results JSON to write")
    parser.add_argument(
        "--image-index",
        type=Path,
        help="also write the images (id, file name, size) and categories as a COCO file "
        "without annotations, e.g. images.json",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="image-decoding processes, shared by the predicting processes (default: 2)",
    )
    return parser.parse_args(argv)


def worker_args(args: argparse.Namespace, params: dict, operational: dict) -> list[str]:
    """The arguments of each torchrun worker: the resolved settings and the same paths."""
    options = {
        "--model": args.model,
        "--images": args.images,
        "--annotations": args.annotations,
        "--out": args.out,
        "--image-index": args.image_index,
        "--workers": args.workers,
    }
    return worker_arguments(params, operational, options)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params, operational = resolve_split_settings(args, kind="predict")
    settings = merge_operational(params, operational)
    from maskrcnn_pipeline.train import launch

    if launch.under_torchrun(os.environ):
        return predict_here(args, settings)
    layout = launch.prediction_layout(settings, launch.visible_gpus())
    if launch.needs_torchrun(layout):
        arguments = worker_args(args, params, operational)
        command = launch.torchrun_command(layout, __file__, arguments, os.environ)
        return launch.run_torchrun(layout, command, run=args.run)
    return predict_here(args, settings)


def predict_here(args: argparse.Namespace, settings: dict) -> int:
    """Predict this process's share (all of it when alone)."""
    import torch

    from maskrcnn_pipeline.inference.predict import (
        images_from_annotations,
        images_from_folder,
        predict,
    )
    from maskrcnn_pipeline.inference.sharding import Shard
    from maskrcnn_pipeline.train.distributed import init_distributed, shutdown

    if args.annotations is not None:
        entries = images_from_annotations(args.images, args.annotations)
    else:
        entries = images_from_folder(args.images)
    info = init_distributed(use_cuda=torch.cuda.is_available())
    try:
        predict(
            args.model,
            entries,
            settings,
            args.out,
            workers=args.workers // info.world_size,
            index_out=args.image_index,
            shard=Shard(info.rank, info.world_size),
        )
    finally:
        shutdown(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
