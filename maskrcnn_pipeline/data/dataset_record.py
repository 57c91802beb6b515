"""The dataset record: what the rules after validation read of a dataset.

``data/<dataset>/validation.json`` (data/validation/) holds everything the checks found:
counts, warnings with examples, the settings they ran with. Training, prediction, evaluation,
the reports and NVIDIA's catalog need only the categories (with their training labels) and
each split's annotation checksum, so they depend on ``data/<dataset>/dataset.json``, written
by its own rule from the annotation files. The verdict is the validation report itself: every
reader of the record also waits for it (an ``ancient`` input, so a rerun of the checks does
not rerun them), and it exists only for a dataset without errors.

Deliberately independent of data/validation/: importing it would make the checks' code an
input of the record's rule, and every edit of them would rerun everything downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.data.categories import Categories
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_json_atomic


def _read_annotations(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The annotation file and its sha256 (one read: the bytes are hashed, then parsed)."""
    try:
        raw = Path(path).read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: cannot read the annotations ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise PipelineError(f"{path}: no categories list; is it a COCO annotation file?")
    return data, hashlib.sha256(raw).hexdigest()


def dataset_record(name: str, splits: Mapping[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """The record of dataset ``name`` from its splits' annotation files (split -> path): the
    categories of the first split (validation refuses splits whose categories differ), the
    model's class count, and every split's annotation checksum."""
    if not splits:
        raise PipelineError(f"dataset {name!r}: no splits to record")
    categories: Categories | None = None
    checksums = {}
    for split, path in splits.items():
        data, checksums[split] = _read_annotations(path)
        categories = categories or Categories.from_records(data["categories"])
    assert categories is not None
    return {
        "dataset": name,
        "num_categories": len(categories),
        "num_classes": len(categories) + 1,  # the model's classes: categories + background
        "categories": categories.labelled(),
        "splits": {split: {"annotations_sha256": digest} for split, digest in checksums.items()},
    }


def write_dataset_record(
    name: str, splits: Mapping[str, str | os.PathLike[str]], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Write the record of dataset ``name`` to ``out`` and return it."""
    record = dataset_record(name, splits)
    write_json_atomic(out, record)
    return record
