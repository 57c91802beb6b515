#!/usr/bin/env python3
"""Turn NVIDIA's benchmark logs into the JSON of scripts/benchmark_train.py or
benchmark_inference.py, so the two engines' figures compare key by key.

train: one folder of train_benchmark.sh's equivalent (its dllogger.json): images/s as NVIDIA
computes it (train_perf_fps), seconds, ms/iteration, peak memory. inference: one folder per
batch size (named bs<N>, inference_benchmark.sh's equivalent): mean latency per batch,
images/s of the model, NVIDIA's end-to-end images/s, and NVIDIA's means of the fastest
90/95/99% of batches (p50/p90/p99 are null: NVIDIA does not log them). Examples:

    python scripts/nvidia_benchmark.py train results/r/benchmark/nvidia_train \\
        --precision fp16 --channels-last True --out results/r/benchmark/nvidia_train.json
    python scripts/nvidia_benchmark.py inference results/r/benchmark/nvidia_inference/bs1 \\
        results/r/benchmark/nvidia_inference/bs8 --precision fp16 \\
        --out results/r/benchmark/nvidia_inference.json
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from maskrcnn_pipeline.cli import emit_figures, parser_from_doc, run_cli
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.nvidia.logs import inference_result, read_dllogger, train_benchmark
from maskrcnn_pipeline.workflow.schema import schema_default


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("kind", choices=("train", "inference"), help="which benchmark")
    parser.add_argument(
        "folders",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="benchmark folder(s) with dllogger.json",
    )
    parser.add_argument("--precision", required=True, help="the run's precision (fp16, fp32)")
    parser.add_argument(
        "--channels-last",
        choices=("True", "False"),
        default=str(schema_default("$defs", "run", "channels_last")),
        help="the run's channels_last (NVIDIA's NHWC; default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="JSON file to write (also printed)")
    return parser


def batch_size(folder: Path) -> int:
    match = re.fullmatch(r"bs(\d+)", folder.name)
    if not match:
        raise PipelineError(f"{folder}: an inference benchmark folder is named bs<batch size>")
    return int(match.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    channels_last = args.channels_last == "True"
    if args.kind == "train":
        if len(args.folders) != 1:
            raise PipelineError("train: give one benchmark folder")
        entries = read_dllogger([args.folders[0] / "dllogger.json"])
        figures = train_benchmark(entries, precision=args.precision, channels_last=channels_last)
    else:
        figures = {
            "engine": "nvidia",
            "precision": args.precision,
            "device": "cuda",
            "results": [
                inference_result(read_dllogger([folder / "dllogger.json"]), batch_size(folder))
                for folder in args.folders
            ],
        }
    emit_figures(figures, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
