"""One trainer per run folder: a second one stops at once and names the first's PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.train.lock import LOCK_NAME, run_lock

HOLD = """
import sys, time
from pathlib import Path
from maskrcnn_pipeline.train.lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def start_holder(checkpoints: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(checkpoints)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_trainer_stops_at_once_naming_the_first(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(PipelineError) as info, run_lock(tmp_path):
            pass
        assert time.monotonic() - started < 1
        assert f"process {holder.pid} on " in str(info.value)
        assert "is training this run already" in str(info.value)
        assert str(tmp_path / LOCK_NAME) in str(info.value)
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_free_again_after_the_holder_is_killed(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with run_lock(tmp_path) as path:  # a stale file from a kill -9 never blocks
        assert path.read_text().split()[0] == str(os.getpid())
