"""The dataset record: the part of a validation report that the rules after validation read.

``data/<dataset>/validation.json`` (data/validation/) holds everything the checks found:
counts, warnings with examples, the settings they ran with. Training, prediction, evaluation
and the reports need only the verdict and the categories (and NVIDIA's catalog the training
annotations' checksum), so they depend on ``data/<dataset>/dataset.json``, which holds just
that. It is written by its own rule from the annotations (through the report), so rewording
a validator message, editing the checks or changing ``bbox_tolerance`` reruns validation
only; new annotations rewrite the record and rerun everything that reads the dataset.

Deliberately independent of data/validation/: importing it would make the checks' code an
input of the record's rule, and every edit of them would rerun everything downstream.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import read_json, write_json_atomic

#: The report's keys that the record keeps as they are.
KEPT_KEYS = ("dataset", "valid", "num_categories", "num_classes", "categories")


def dataset_record(report: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a validation report: its verdict, its categories, and each split's
    annotation checksum (what a checkpoint of NVIDIA's training depends on)."""
    missing = [key for key in (*KEPT_KEYS, "splits") if key not in report]
    if missing:
        raise PipelineError(
            f"not a validation report: no {', '.join(missing)}; write it with "
            "scripts/validate_dataset.py"
        )
    if not report["valid"]:
        raise PipelineError(
            f"dataset {report['dataset']!r} did not pass validation: fix it first "
            "(scripts/validate_dataset.py lists its errors)"
        )
    record = {key: report[key] for key in KEPT_KEYS}
    record["splits"] = {
        name: {"annotations_sha256": split["annotations_sha256"]}
        for name, split in report["splits"].items()
    }
    return record


def write_dataset_record(
    report: str | os.PathLike[str], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Read the validation report ``report``, write its record to ``out``, return it."""
    data = read_json(report)
    if not isinstance(data, dict):
        raise PipelineError(f"{report}: not a validation report (expected a JSON object)")
    try:
        record = dataset_record(data)
    except PipelineError as exc:
        raise PipelineError(f"{report}: {exc}") from exc
    write_json_atomic(out, record)
    return record
