#!/usr/bin/env python3
"""Training throughput of a run's model (NVIDIA's train_benchmark.sh): N iterations after a
warmup, on synthetic images of a given size or on a real COCO-format split; prints and
writes images/s and ms/iteration as JSON.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import emit_figures, parser_from_doc, run_cli
from maskrcnn_pipeline.workflow.settings_args import (
    add_benchmark_arguments,
    apply_overrides,
    resolve_settings,
)

log = logging.getLogger("benchmark_train")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    add_benchmark_arguments(parser, iterations=50, warmup=10)
    parser.add_argument(
        "--data",
        choices=("synthetic", "real"),
        default="synthetic",
        help="synthetic images (default) or a real split (--images/--annotations)",
    )
    parser.add_argument("--images", type=Path, help="real split: images folder")
    parser.add_argument("--annotations", type=Path, help="real split: COCO annotation JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = apply_overrides(resolve_settings(args, kind="run"), args)
    from maskrcnn_pipeline.train.benchmark import (
        benchmark_device,
        benchmark_training,
        real_batches,
        synthetic_batches,
    )

    device = benchmark_device(settings)
    batch = settings["solver"]["ims_per_gpu"]
    if args.data == "real":
        batches, classes = real_batches(settings, args.images, args.annotations)
    else:
        batches = synthetic_batches(batch, args.height, args.width, args.classes)
        classes = args.classes
    figures = benchmark_training(
        settings,
        batches,
        num_classes=classes,
        device=device,
        iterations=args.iterations,
        warmup=args.warmup,
    )
    figures["data"] = args.data
    emit_figures(figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
