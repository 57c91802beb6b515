"""A killed pipeline loses at most the work since the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.paths import BIN
from tests.support.workflow import run_snakemake, tool_env

pytestmark = pytest.mark.slow


def test_kill_9_then_rerun_resumes_from_the_last_checkpoint(workflow: Path) -> None:
    config_path = workflow / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    run = config["runs"]["tiny"]
    run["solver"]["max_iter"] = 200
    run["checkpoint"] = {"period": 10, "keep": 2}
    run["log_period"] = 10
    config_path.write_text(yaml.safe_dump(config))

    snakemake = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "1"],
        cwd=workflow,
        env=tool_env(),
        stdout=(workflow / "first-run.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: kill -9 takes every child with it
    )
    checkpoints = workflow / "results" / "tiny" / "train" / "checkpoints"
    deadline = time.monotonic() + 300
    try:
        while not list(checkpoints.glob("model_*.pth")):
            if snakemake.poll() is not None:
                output = (workflow / "first-run.log").read_text()
                raise AssertionError(f"the pipeline ended before a checkpoint:\n{output}")
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.1)
    finally:
        if snakemake.poll() is None:
            os.killpg(snakemake.pid, signal.SIGKILL)
        snakemake.wait(timeout=30)
    killed_at = max(int(p.stem.split("_")[1]) for p in checkpoints.glob("model_*.pth"))
    assert killed_at < 200

    run_snakemake(workflow, "--unlock")
    run_snakemake(workflow, "--rerun-incomplete")

    log = (workflow / "results" / "logs" / "train" / "tiny.log").read_text()
    assert "resuming from" in log
    metrics = workflow / "results" / "tiny" / "train" / "metrics.jsonl"
    iterations = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
    assert iterations == list(range(10, 201, 10))
    assert (workflow / "results" / "tiny" / "report" / "summary.md").is_file()
