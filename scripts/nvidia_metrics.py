#!/usr/bin/env python3
"""Turn NVIDIA's training log (dllogger JSON lines) into the run's metrics.jsonl and provenance.

Reads every attempt's --json-summary file in --train-dir (dllogger.json.<time> of earlier,
resumed attempts, then dllogger.json) and writes metrics.jsonl in the pipeline's format (one
line per logged iteration: loss and its components, lr, images/s, seconds per iteration,
data time, peak memory, wall time; evaluation lines when their training evaluated), which
the report and the comparison read for both engines, and provenance.json with NVIDIA's
image, source commit and command. Example:

    python scripts/nvidia_metrics.py --train-dir results/r50_nvidia/train/nvidia \\
        --ims-per-batch 96 --out results/r50_nvidia/train/metrics.jsonl \\
        --provenance results/r50_nvidia/train/provenance.json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.cli import json_option, parser_from_doc, run_cli
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import read_json, write_text_atomic
from maskrcnn_pipeline.nvidia.logs import (
    parameters,
    read_dllogger,
    summary,
    training_records,
)
from maskrcnn_pipeline.provenance import write_provenance

log = logging.getLogger("nvidia_metrics")
SUMMARY = "dllogger.json"


def build_parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument(
        "--train-dir", type=Path, required=True, metavar="DIR", help="NVIDIA's OUTPUT_DIR"
    )
    parser.add_argument(
        "--ims-per-batch",
        type=int,
        metavar="N",
        help="global batch, for images/s when the log lacks its config (it normally has it)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="metrics.jsonl")
    parser.add_argument(
        "--provenance", type=Path, metavar="FILE", help="provenance.json to write (optional)"
    )
    parser.add_argument(
        "--settings", default="{}", metavar="JSON", help="what to record as the settings"
    )
    parser.add_argument(
        "--image-record",
        type=Path,
        metavar="FILE",
        help="the NVIDIA image's record (results/container/nvidia-maskrcnn.json)",
    )
    parser.add_argument(
        "--hash",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an input whose sha256 goes into the provenance (repeat)",
    )
    return parser


def attempt_files(train_dir: Path) -> list[Path]:
    """Earlier attempts' files (renamed with their start time, so sorted by it), then the last."""
    earlier = sorted(train_dir.glob(f"{SUMMARY}.*"))
    current = train_dir / SUMMARY
    files = [*earlier, current] if current.is_file() else earlier
    if not files:
        raise PipelineError(f"{train_dir}: no {SUMMARY}; did NVIDIA's training run?")
    return files


def image_container(record_path: Path | None) -> dict[str, Any] | None:
    """The provenance's container: NVIDIA's image, which ran the training (not this job's)."""
    if record_path is None:
        return None
    record = read_json(record_path)
    return {
        "image": record.get("image"),
        "digest": f"sha256:{record['sha256']}" if record.get("sha256") else None,
        "base": record.get("base"),
        "build_args": record.get("build_args"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = json_option(args.settings, "--settings")
    files = attempt_files(args.train_dir)
    entries = read_dllogger(files)
    records = training_records(entries, images_per_batch=args.ims_per_batch)
    if not records:
        raise PipelineError(f"{files[-1]}: no iteration was logged; see the training's log")
    write_text_atomic(args.out, "".join(json.dumps(record) + "\n" for record in records))
    totals = summary(entries)
    log.info("wrote %s: %d lines from %d file(s)", args.out, len(records), len(files))
    if args.provenance:
        iterations = [record["iteration"] for record in records if "eval" not in record]
        extra: dict[str, Any] = {
            "engine": "nvidia",
            "iterations": max(iterations) if iterations else None,
            "training_seconds": totals.get("e2e_train_time"),
            "nvidia": {
                "dllogger_files": [str(path) for path in files],
                "summary": totals,
                "gpu_count": parameters(entries).get("gpu_count"),
            },
        }
        container = image_container(args.image_record)
        if container is not None:
            extra["container"] = container
        write_provenance(args.provenance, settings=settings, inputs=args.hash, extra=extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
