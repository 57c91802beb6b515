"""Stopping Snakemake stops its training with a checkpoint, and never leaves two trainers.

Real runs of the tiny pipeline: SIGTERM or SIGINT to the snakemake process alone (not its
process group, which would signal the trainer directly), kill -9 of snakemake, and the
README's old recovery (--unlock, --rerun-incomplete) while a trainer is still alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from maskrcnn_pipeline.train.lock import run_lock
from tests.support.paths import BIN
from tests.support.workflow import run_snakemake, tool_env

pytestmark = pytest.mark.slow

MAX_ITER = 300
TRAIN_TARGET = "results/tiny/train/model_final.pth"


def long_training(workflow: Path, max_iter: int = MAX_ITER) -> None:
    """The tiny run, long enough to be stopped while it trains; no periodic checkpoint, so
    any checkpoint comes from the stop."""
    config_path = workflow / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    run = config["runs"]["tiny"]
    run["solver"]["max_iter"] = max_iter
    run["checkpoint"] = {"period": 1000, "keep": 2}
    run["log_period"] = 5
    config_path.write_text(yaml.safe_dump(config))


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@contextmanager
def training(workflow: Path, log_name: str = "snakemake.log") -> Iterator[subprocess.Popen]:
    """Snakemake running the train job, returned once the trainer has logged a step."""
    process = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "1", TRAIN_TARGET],
        cwd=workflow,
        env=tool_env(),
        stdout=(workflow / log_name).open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, so cleanup can reach every child
    )
    live = workflow / "results" / "tiny" / "train" / "checkpoints" / "metrics.jsonl"
    try:
        wait_for(lambda: live.is_file() and live.read_text().strip(), "training step")
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)


def lock_is_free(workflow: Path) -> bool:
    try:
        with run_lock(workflow / "results" / "tiny" / "train"):
            return True
    except Exception:
        return False


def train_log(workflow: Path) -> str:
    return (workflow / "results" / "logs" / "train" / "tiny.log").read_text()


def checkpoints(workflow: Path) -> list[Path]:
    return sorted((workflow / "results" / "tiny" / "train" / "checkpoints").glob("model_*.pth"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_snakemake_checkpoints_the_training_and_a_rerun_resumes(
    workflow: Path, signum: signal.Signals
) -> None:
    long_training(workflow)
    with training(workflow) as snakemake:
        os.kill(snakemake.pid, signum)
        snakemake.wait(timeout=120)
        assert lock_is_free(workflow), "a trainer is still running after snakemake stopped"
    assert "training stopped by SIGTERM" in train_log(workflow)
    (stopped,) = checkpoints(workflow)
    stopped_at = int(stopped.stem.split("_")[1])
    assert 0 < stopped_at < MAX_ITER

    run_snakemake(workflow, TRAIN_TARGET)  # the rerun resumes where the stop left off
    assert f"resuming from iteration {stopped_at}" in train_log(workflow)
    metrics = workflow / "results" / "tiny" / "train" / "metrics.jsonl"
    iterations = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
    assert iterations == sorted(set(iterations)) and iterations[-1] == MAX_ITER


def test_a_killed_snakemake_leaves_no_trainer_behind(workflow: Path) -> None:
    long_training(workflow)
    with training(workflow) as snakemake:
        os.kill(snakemake.pid, signal.SIGKILL)
        snakemake.wait(timeout=30)
        wait_for(lambda: lock_is_free(workflow), "stop of the orphaned trainer", timeout=60)
    assert "is gone: stopping" in train_log(workflow)
    assert "training stopped by SIGTERM" in train_log(workflow)
    assert len(checkpoints(workflow)) == 1


def test_the_old_recovery_never_starts_a_second_trainer(workflow: Path) -> None:
    """--unlock and --rerun-incomplete while the first trainer lives: the second stops at
    once, naming the first's PID, and the first goes on."""
    long_training(workflow, max_iter=100_000)  # still training when the second one is done
    with training(workflow):
        holder = (workflow / "results" / "tiny" / "train" / "trainer.lock").read_text().split()[0]
        run_snakemake(workflow, "--unlock")
        second = run_snakemake(
            workflow, "--rerun-incomplete", "--retries", "0", TRAIN_TARGET, check=False
        )
        assert second.returncode != 0
        assert f"process {holder} on" in train_log(workflow)
        assert "is training this run already" in train_log(workflow)
        assert not lock_is_free(workflow), "the first trainer should still be running"
