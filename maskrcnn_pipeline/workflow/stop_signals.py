"""Stopping Snakemake stops its trainers with a checkpoint.

Snakemake answers SIGTERM by waiting for its running jobs to finish (a training: hours) and
SIGINT by abandoning them, and it passes neither on to a job. The Snakefile's ``onstart``
therefore chains a handler in front of Snakemake's own: it sends SIGTERM to every trainer
this Snakemake started on this host (found through the run locks, train/lock.py), so each
saves a checkpoint within an iteration and exits; then Snakemake's handler runs as before.
Trainers on other hosts (a Slurm job) are stopped by the cluster's own scancel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType

from maskrcnn_pipeline.train.lock import holder_of

#: What Snakemake is stopped with: from `kill`, a scheduler, or Ctrl-C in a terminal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def parent_of(pid: int) -> int | None:
    """The parent PID of ``pid`` (Linux /proc), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return int(stat.rpartition(")")[2].split()[1])


def is_descendant(pid: int, ancestor: int) -> bool:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        parent = parent_of(pid)
        if parent is None:
            return False
        if parent == ancestor:
            return True
        pid = parent
    return False


def own_trainers(locks: Iterable[Path]) -> list[int]:
    """PIDs of the trainers named in ``locks`` that run on this host under this process."""
    host, me = socket.gethostname(), os.getpid()
    found = []
    for lock in locks:
        holder = holder_of(lock)
        if holder and holder[1] == host and is_descendant(holder[0], me):
            found.append(holder[0])
    return found


def forward_stop_signals(locks: Callable[[], Iterable[Path]]) -> None:
    """Put a handler before the current one of each stop signal that first sends SIGTERM
    to this process's trainers (``locks()`` lists the run locks to look at)."""
    for signum in STOP_SIGNALS:
        previous = signal.getsignal(signum)

        def handler(received: int, frame: FrameType | None, previous: object = previous) -> None:
            for pid in own_trainers(locks()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            if callable(previous):
                previous(received, frame)
            elif received == signal.SIGINT:
                raise KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                signal.signal(received, signal.SIG_DFL)
                os.kill(os.getpid(), received)

        signal.signal(signum, handler)
