"""``train/metrics.jsonl``: training lines and interleaved evaluation lines.

This module alone knows the file's format: training appends to it (:func:`append_record`),
a resume truncates it (:func:`truncate_after`), and the reports read it
(:func:`read_metrics_log`).

Every line is checked as it is read, so a malformed one stops the report with the file and
line number instead of surfacing later as a puzzling gap in a plot. Keys that only some runs
log (``data_time``, ``max_memory_mb``) are simply absent columns; the figures that need them
are skipped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_text_atomic

log = logging.getLogger(__name__)

EVAL_KEY = "eval"


@dataclass(frozen=True)
class TrainingLog:
    """A parsed metrics.jsonl.

    ``training`` has one row per logged iteration (column ``iteration`` plus whatever numeric
    keys were logged); ``evals`` is long-format with columns iteration, iou_type, stat, value.
    """

    path: Path
    training: pd.DataFrame
    evals: pd.DataFrame

    def loss_columns(self) -> list[str]:
        """The total loss first, then every ``loss_*`` component in logged order."""
        return [c for c in self.training.columns if c == "loss" or c.startswith("loss_")]


#: Headline numbers of a training run: (logged column, how its values are summarised).
TRAINING_SUMMARY = {
    "iterations": ("iteration", "max"),
    "seconds": ("seconds", "max"),
    "images_per_s": ("images_per_s", "median"),
    "data_time": ("data_time", "median"),
    "max_memory_mb": ("max_memory_mb", "max"),
}


def training_summary(log: TrainingLog) -> dict[str, float | None]:
    """The headline numbers of TRAINING_SUMMARY, None for a column the run did not log.

    One definition for the per-run summary and the cross-run comparison, so "training time"
    and "images/s" mean the same thing in both: the last logged wall-clock seconds and the
    median logged throughput (the median ignores the slow first iterations).
    """
    summary: dict[str, float | None] = {}
    for name, (column, how) in TRAINING_SUMMARY.items():
        values = log.training[column].dropna() if column in log.training.columns else None
        summary[name] = None if values is None or values.empty else float(values.agg(how))
    return summary


def eval_history(log: TrainingLog, stat: str = "AP") -> pd.DataFrame:
    """One row per periodically evaluated iteration, one column per iou type, of ``stat``.

    Empty (no rows) when the run logged no eval lines, i.e. had no periodic evaluation.
    """
    rows = log.evals[log.evals["stat"] == stat]
    table = rows.pivot_table(index="iteration", columns="iou_type", values="value", sort=True)
    table.columns.name = None
    return table


def read_metrics_log(path: Path) -> TrainingLog:
    """Parse ``path``; raise PipelineError naming the line of the first malformed record."""
    training: list[dict[str, float]] = []
    evals: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: file not found; is the run trained?") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        record = _parse_line(line, where)
        iteration = record.pop("iteration")
        if EVAL_KEY in record:
            evals.extend(_eval_rows(iteration, record.pop(EVAL_KEY), where))
        if record:
            training.append({"iteration": iteration, **_numeric_values(record, where)})
    return TrainingLog(path=path, training=_training_frame(training), evals=_eval_frame(evals))


def _parse_line(line: str, where: str) -> dict[str, Any]:
    """One JSON object with an integer ``iteration``; anything else is malformed."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{where}: not valid JSON ({exc.msg}); fix or delete the line") from exc
    if not isinstance(record, dict):
        raise PipelineError(f"{where}: expected a JSON object, got {type(record).__name__}")
    iteration = record.get("iteration")
    if not _is_int(iteration):
        raise PipelineError(f"{where}: 'iteration' must be an integer, got {iteration!r}")
    return record


def _numeric_values(record: dict[str, Any], where: str) -> dict[str, float]:
    """Every training value must be a number: a string or list there means a broken writer."""
    for key, value in record.items():
        if not _is_number(value):
            raise PipelineError(f"{where}: '{key}' must be a number, got {value!r}")
    return {key: float(value) for key, value in record.items()}


def _eval_rows(iteration: int, result: Any, where: str) -> list[dict[str, Any]]:
    """Flatten ``{"bbox": {"AP": ...}, ...}`` into long-format rows."""
    if not isinstance(result, dict):
        raise PipelineError(f"{where}: 'eval' must map iou types to stats, got {result!r}")
    rows = []
    for iou_type, stats in result.items():
        if not isinstance(stats, dict):
            raise PipelineError(f"{where}: 'eval.{iou_type}' must map stat names to numbers")
        for stat, value in stats.items():
            if not _is_number(value):
                raise PipelineError(f"{where}: 'eval.{iou_type}.{stat}' must be a number")
            rows.append(
                {"iteration": iteration, "iou_type": iou_type, "stat": stat, "value": float(value)}
            )
    return rows


def _training_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    """Rows sorted by iteration; a resumed run re-logs some iterations and the later line wins."""
    if not rows:
        return pd.DataFrame({"iteration": pd.Series(dtype="int64")})
    frame = pd.DataFrame(rows).astype({"iteration": "int64"})
    frame = frame.drop_duplicates("iteration", keep="last").sort_values("iteration")
    return frame.reset_index(drop=True)


def _eval_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Long-format eval stats, keeping the last value logged for an iteration like training."""
    columns = ["iteration", "iou_type", "stat", "value"]
    if not rows:
        return pd.DataFrame(columns=columns).astype({"iteration": "int64", "value": "float64"})
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.drop_duplicates(["iteration", "iou_type", "stat"], keep="last")
    return frame.sort_values("iteration", kind="stable").reset_index(drop=True)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """Ints and floats, NaN included (a diverged loss is data), but not booleans."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def append_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_after(path: Path, iteration: int) -> None:
    """Keep only the lines up to ``iteration``: a resume logs what came after again.

    The live log is appended to while training runs, so a kill -9 or a full disk during an
    append can leave a torn last line: it is dropped with a warning naming the file (the
    resumed training logs its iteration again). A malformed line anywhere else means the file
    was edited, and stops the resume with the file and line named.
    """
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _parse_line(line, f"{path}:{number}")
        except PipelineError as error:
            if number != len(lines):
                raise
            log.warning("%s; dropped it (a write interrupted by a crash or a full disk)", error)
            continue
        if record["iteration"] <= iteration:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))
