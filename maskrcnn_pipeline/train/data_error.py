"""A data error stops training once, not once per retry.

The train rule has Snakemake ``retries:`` for preemption and node failures: the next attempt
resumes from the last checkpoint. An unreadable or truncated image (a :class:`DataError`,
often raised in a DataLoader worker minutes in) fails every attempt the same way, so each
retry would rebuild the model, resume and crash again at the same image. When training
fails on one, every process that met it leaves its message in ``<out_dir>/data_error.json``
(not a rule output, so Snakemake does not delete it with the failed job's outputs). A retry
(attempt 2 and later, which the rule passes as ``--attempt``) that finds the file fails at
once with the same message, before starting any process; a first attempt (a new Snakemake
invocation, typically after the file was fixed) removes it and trains.

Why a file and the attempt number, not an exit code: Snakemake retries a failed job whatever
its exit status, and a plain marker without the attempt would also refuse a run the user
started after fixing the data, or a transient read error (a network file system's hiccup).
"""

from __future__ import annotations

from pathlib import Path

from maskrcnn_pipeline.errors import DataError, original_message
from maskrcnn_pipeline.fileio import read_json, write_json_atomic

MARKER = "data_error.json"


def marker_path(out_dir: Path) -> Path:
    """Where a failed training leaves its data error: beside the run's checkpoints."""
    return Path(out_dir) / MARKER


def record_data_error(out_dir: Path, error: DataError) -> DataError:
    """Write the marker and return the error with its own message (a DataLoader worker's
    error comes wrapped in the worker's traceback)."""
    message = original_message(error)
    write_json_atomic(marker_path(out_dir), {"message": message, "file": error.path})
    return DataError(
        f"{message}\n(training stopped on this data error; the train rule's retries will not "
        f"train again until the data changes: {marker_path(out_dir)})",
        path=error.path,
    )


def before_attempt(out_dir: Path, attempt: int) -> None:
    """Clear a stale marker on a first attempt; on a retry, fail if the previous attempt
    stopped on a data error."""
    marker = marker_path(out_dir)
    if attempt <= 1:
        marker.unlink(missing_ok=True)
        return
    if not marker.is_file():
        return
    recorded = read_json(marker)
    message = recorded.get("message", "") if isinstance(recorded, dict) else ""
    raise DataError(
        f"attempt {attempt} not started: the previous attempt stopped on a data error, which "
        f"a retry would meet again:\n{message}\nFix the data and run the workflow again (a "
        f"new run trains; {marker} records the error)",
        path=recorded.get("file") if isinstance(recorded, dict) else None,
    )
