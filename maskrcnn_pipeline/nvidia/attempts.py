"""What train_nvidia does to train/nvidia/ before each attempt of NVIDIA's training.

The rule is retried (preemption, a node failure) and rerun, and every attempt resumes from
NVIDIA's own ``last_checkpoint`` in the folder, which the workflow does not declare. Two
things must hold before their trainer starts:

- the previous attempt's dllogger file (``--json-summary``) is kept: their logger truncates
  it, and nvidia_metrics reads every attempt's lines (renamed ``<file>.<start time>``);
- a ``last_checkpoint`` that names a file no longer there (a forced rerun removed the
  checkpoints) is dropped, so training starts over instead of failing to load it.

This runs in the pipeline's Python on the job's host, before NVIDIA's image starts.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

#: Their checkpointer's record of the newest checkpoint: one line, that checkpoint's path.
LAST_CHECKPOINT = "last_checkpoint"
#: The suffix an earlier attempt's dllogger file gets: the time the next attempt started.
ATTEMPT_TIME_FORMAT = "%Y%m%dT%H%M%S"


def keep_previous_summary(summary: Path, now: datetime) -> Path | None:
    """Rename the previous attempt's dllogger file to ``<summary>.<now>``; None if none."""
    if not summary.is_file():
        return None
    kept = summary.with_name(f"{summary.name}.{now.strftime(ATTEMPT_TIME_FORMAT)}")
    os.replace(summary, kept)
    log.info("kept the previous attempt's %s as %s", summary.name, kept)
    return kept


def drop_dangling_last_checkpoint(train_dir: Path) -> bool:
    """Remove ``last_checkpoint`` when the checkpoint it names (a path relative to the
    working directory, as their OUTPUT_DIR is) does not exist; returns whether it did."""
    record = train_dir / LAST_CHECKPOINT
    if not record.is_file():
        return False
    named = record.read_text(encoding="utf-8").rstrip("\n")
    if named and Path(named).is_file():
        return False
    record.unlink()
    log.warning("%s named %r, which is gone: training starts over", record, named)
    return True


def prepare_attempt(train_dir: Path, summary: Path, now: datetime | None = None) -> None:
    """Both steps, in a train_dir that exists afterwards."""
    train_dir.mkdir(parents=True, exist_ok=True)
    keep_previous_summary(summary, now or datetime.now())
    drop_dangling_last_checkpoint(train_dir)
