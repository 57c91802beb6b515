"""Writing an EvaluationResult to the files the pipeline's rules declare (atomically)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

from maskrcnn_pipeline.evaluation.result import EvaluationResult
from maskrcnn_pipeline.fileio import write_json_atomic, write_text_atomic

PathLike = str | os.PathLike[str]
PER_CATEGORY_COLUMNS = ("iou_type", "category_id", "category_name", "AP", "AP50", "AP75")
PR_CURVE_COLUMNS = ("iou_type", "iou_threshold", "recall", "precision")


def write_metrics(result: EvaluationResult, out_json: PathLike) -> None:
    """metrics.json: ``{"bbox": {"AP": ..., ... "ARl": ...}, "segm": {...}}``."""
    write_json_atomic(out_json, result.stats)


def write_per_category_csv(result: EvaluationResult, path: PathLike) -> None:
    """One row per (iou_type, category); AP cells are empty for a category without GT."""
    rows = (
        (r.iou_type, r.category_id, r.category_name, r.AP, r.AP50, r.AP75)
        for r in result.per_category
    )
    _write_csv(path, PER_CATEGORY_COLUMNS, rows)


def write_pr_curves_csv(result: EvaluationResult, path: PathLike) -> None:
    """Long format, one row per recall threshold, ready for a plotting library's ``hue``."""
    rows = (
        (curve.iou_type, curve.iou_threshold, recall, precision)
        for curve in result.pr_curves
        for recall, precision in zip(curve.recall, curve.precision, strict=True)
    )
    _write_csv(path, PR_CURVE_COLUMNS, rows)


def _write_csv(path: PathLike, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(value) for value in row] for row in rows)
    write_text_atomic(path, buffer.getvalue())


def _cell(value: Any) -> Any:
    """NaN (no GT) becomes an empty cell, which pandas and spreadsheets read as missing."""
    return "" if isinstance(value, float) and math.isnan(value) else value
