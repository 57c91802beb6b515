"""Temporary signal handlers, put back afterwards.

Training and the torchrun launcher both take over SIGTERM/SIGUSR1 for a while. A handler
left installed keeps whatever its closure holds alive until interpreter exit: for the
trainer that is the DDP model and its process group, whose late teardown can abort gloo.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

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
