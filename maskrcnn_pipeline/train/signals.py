"""Temporary signal handlers, put back afterwards.

Training and the torchrun launcher both take over SIGTERM/SIGUSR1 for a while. A handler
left installed keeps whatever its closure holds alive until interpreter exit: for the
trainer that is the DDP model and its process group, whose late teardown can abort gloo.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], object]


@contextmanager
def handling(signals: Iterable[signal.Signals], handler: Handler) -> Iterator[None]:
    """Route ``signals`` to ``handler`` inside the block; restore the previous handlers after."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_when_orphaned(period: float = 2.0) -> threading.Thread:
    """Send this process SIGTERM (checkpoint and stop) once its parent has gone.

    The train rule starts the trainer as its job's own process (``exec``), so its parent is
    the Snakemake that runs the job; when that Snakemake is killed outright (kill -9, a lost
    terminal), nothing else would stop a training that could run for days beside the next
    Snakemake's. Polling ``getppid`` is portable and costs nothing against a training step.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        log.warning("the process that started training (pid %d) is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="stop-when-orphaned", daemon=True)
    thread.start()
    return thread
