#!/usr/bin/env python3
"""Inference latency and throughput of a run's model (NVIDIA's inference_benchmark.sh):
mean/p50/p90/p99 latency per batch and images/s, for each batch size, on synthetic images
or the images of a folder; with --model the trained weights, else random ones (same work).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import emit_figures, parser_from_doc, run_cli
from maskrcnn_pipeline.workflow.settings_args import (
    add_benchmark_arguments,
    apply_overrides,
    resolve_settings,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = parser_from_doc(__doc__)
    add_benchmark_arguments(parser, iterations=50, warmup=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="(1 8)")
    parser.add_argument("--model", type=Path, help="model_final.pth (default: random weights)")
    parser.add_argument("--images", type=Path, help="folder of images (default: synthetic)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = apply_overrides(resolve_settings(args, kind="run"), args)
    import torch

    from maskrcnn_pipeline.data.coco import read_image
    from maskrcnn_pipeline.inference.predict import Predictor, images_from_folder
    from maskrcnn_pipeline.model.build import build_model
    from maskrcnn_pipeline.train.benchmark import (
        benchmark_device,
        benchmark_inference,
        synthetic_sample,
    )

    device = benchmark_device(settings)
    if args.model:
        run = {"test": settings["test"], "precision": settings["precision"], "channels_last": False}
        model = Predictor.from_checkpoint(args.model, run, torch.device("cpu")).model
    else:
        model = build_model(
            settings["model"], num_classes=args.classes, input_settings=settings["input"]
        )
    if args.images:
        images = [read_image(entry.path) for entry in images_from_folder(args.images)[:64]]
    else:
        generator = torch.Generator().manual_seed(0)
        images = [
            synthetic_sample(args.height, args.width, args.classes, generator)[0] for _ in range(8)
        ]
    figures = {
        "precision": settings["precision"],
        "device": str(device),
        "results": benchmark_inference(
            model,
            images,
            test_settings=settings["test"],
            precision=settings["precision"],
            channels_last=settings["channels_last"],
            device=device,
            batch_sizes=args.batch_sizes,
            iterations=args.iterations,
            warmup=args.warmup,
        ),
    }
    emit_figures(figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
