"""Process-group teardown: nothing that holds the group may outlive ``shutdown``.

A 2-process CPU run once aborted at exit (SIGABRT in gloo) because the DDP model, kept
alive by a signal handler and by the hooks' reference cycles, was freed only during
interpreter teardown. These tests pin down both halves of the fix in one process.
"""

from __future__ import annotations

import signal
import socket
import weakref
from collections.abc import Iterator
from types import FrameType

import pytest
import torch.distributed as dist
from torch import nn

from maskrcnn_pipeline.train.distributed import DistInfo, shutdown
from maskrcnn_pipeline.train.run import STOP_SIGNALS
from maskrcnn_pipeline.train.signals import handling


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gloo_group() -> Iterator[None]:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class Holder:
    """Stands for the trainer: its hook points back at it, a cycle only gc can free."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.hook = lambda: self.model


@pytest.mark.usefixtures("gloo_group")
def test_shutdown_frees_a_ddp_model_held_in_a_reference_cycle() -> None:
    holder = Holder(nn.parallel.DistributedDataParallel(nn.Linear(2, 2)))
    alive = weakref.ref(holder.model)
    del holder
    assert alive() is not None  # only the cycle holds it now

    shutdown(DistInfo(rank=0, world_size=2))

    assert alive() is None
    assert not dist.is_initialized()


def test_stop_signal_handlers_route_to_the_handler_and_are_restored() -> None:
    class StopRecorder:
        """Stands for the trainer's stop request: records the signal it was asked to stop on."""

        stop_signal: int | None = None

        def __call__(self, signum: int, frame: FrameType | None) -> None:
            self.stop_signal = signum

    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    recorder = StopRecorder()
    with handling(STOP_SIGNALS, recorder):
        signal.raise_signal(signal.SIGUSR1)
        assert recorder.stop_signal == signal.SIGUSR1
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before
    recorder_ref = weakref.ref(recorder)
    del recorder
    assert recorder_ref() is None  # no handler keeps it alive
