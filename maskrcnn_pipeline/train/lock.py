"""One trainer per run folder: an exclusive lock that names the process holding it.

Two trainers in one run folder write the same checkpoints and metrics log (after a killed
Snakemake, ``--unlock`` and ``--rerun-incomplete`` used to start a second one beside the
orphaned first). The first trainer takes an ``flock`` on ``trainer.lock`` in the run's train
folder (not in checkpoints/, which a change of settings moves aside) and
writes its PID there; a second one stops at once with that PID in its message. The kernel
releases the lock when the holder exits, however it exits (kill -9 included), so a stale
lock file never blocks a later run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from maskrcnn_pipeline.errors import PipelineError

LOCK_NAME = "trainer.lock"


def holder_of(path: Path) -> tuple[int, str] | None:
    """(PID, host) of the trainer a lock file names, if it names one. Torch-free: the
    workflow reads it to stop its own trainers (workflow/stop_signals.py)."""
    try:
        pid, host = path.read_text(encoding="utf-8").split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[Path]:
    """Hold the run's trainer lock for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = holder_of(path)
            who = f"process {holder[0]} on {holder[1]}" if holder else "another process"
            pid = holder[0] if holder else "<pid>"
            raise PipelineError(
                f"{path}: {who} is training this run already (it holds the run's lock). "
                f"Wait for it to finish, or stop it first (`kill -TERM {pid}` saves a "
                "checkpoint), then run again: it resumes from the last checkpoint"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the flock
