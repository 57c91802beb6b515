"""Launching training: torchrun with several processes, GPU checks, preemption signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.train.launch import (
    check_gpus,
    first_host,
    hosts_of,
    rendezvous_args,
    rendezvous_failure,
    run_torchrun,
    torchrun_command,
)
from maskrcnn_pipeline.workflow.code_inputs import code_digest, train_code
from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.params import train_settings
from tests.support.datasets import make_tiny_dataset
from tests.support.paths import REPO, TESTS_DATA
from tests.support.workflow import run_script, tool_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data"), val=4)


def write_config(tmp_path: Path, **run: object) -> Path:
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    for key, value in run.items():
        if isinstance(value, dict):
            config["runs"]["tiny"].setdefault(key, {}).update(value)
        else:
            config["runs"]["tiny"][key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_args(config: Path, dataset: Path, out: Path) -> list[str]:
    return [
        "--config",
        str(config),
        "--run",
        "tiny",
        "--images",
        str(dataset / "train"),
        "--annotations",
        str(dataset / "annotations" / "train.json"),
        "--out-dir",
        str(out),
    ]


def test_two_gloo_processes_keep_identical_parameters(dataset: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, cpu_processes=2, threads=1, solver={"max_iter": 4})
    result = run_script("train.py", train_args(config, dataset, tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "model replicas identical on 2 processes" in result.stderr
    assert "lr 0.002 at global batch 4 (2 x 2)" in result.stderr  # linear scaling, logged
    assert torch.load(tmp_path / "out" / "model_final.pth", weights_only=False)["iteration"] == 4


def test_more_gpus_than_the_node_has_stops_before_training(dataset: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, gpus=64)
    result = run_script("train.py", train_args(config, dataset, tmp_path / "out"))
    assert result.returncode == 2
    assert "asks for 64 GPU(s) per node but this node has" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_check_and_rendezvous_arguments() -> None:
    with pytest.raises(PipelineError, match=r"runs\.r50\.gpus: the run asks for 2 GPU"):
        check_gpus({"gpus": 2}, visible=1, run="r50")
    check_gpus({"gpus": 2}, visible=2)
    assert rendezvous_args({"nodes": 1}, {}) == ["--standalone", "--nnodes=1"]
    with pytest.raises(PipelineError, match="2 nodes need a Slurm allocation"):
        rendezvous_args({"nodes": 2}, {})
    command = torchrun_command(
        {"nodes": 1, "gpus": 8, "cpu_processes": 1}, "scripts/train.py", ["--x"], {}
    )
    assert command[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=8",
        "scripts/train.py",
        "--x",
    ]


#: A run's rendezvous settings as the schema's defaults give them.
RENDEZVOUS = {"port": 29500, "timeout": 300}


def test_multi_node_rendezvous_from_slurm_environment() -> None:
    assert first_host("gpu[01-04,07],cpu1") == "gpu01"
    assert first_host("node7") == "node7"
    assert hosts_of("gpu[01-02,07],cpu1,mrcnn-n[1-2]") == [
        *("gpu01", "gpu02", "gpu07", "cpu1"),
        *("mrcnn-n1", "mrcnn-n2"),
    ]
    with pytest.raises(PipelineError, match="not a Slurm node list"):
        hosts_of("gpu[a-b]")
    settings = {"nodes": 2, "rendezvous": {"port": 29600, "timeout": 45}}
    env = {"SLURM_JOB_NODELIST": "gpu[12-13]", "SLURM_NNODES": "2", "SLURM_JOB_ID": "99"}
    assert rendezvous_args(settings, env) == [
        "--nnodes=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=gpu12:29600",
        "--rdzv-id=99",
        "--rdzv-conf=join_timeout=45,read_timeout=45",
    ]
    env["SLURM_LAUNCH_NODE_IPADDR"] = "10.0.0.5"
    assert "--rdzv-endpoint=10.0.0.5:29600" in rendezvous_args(settings, env)
    with pytest.raises(PipelineError, match="the Slurm job has 3"):
        rendezvous_args(settings, {**env, "SLURM_NNODES": "3"})


def test_a_rendezvous_failure_names_the_nodes_and_the_timeout() -> None:
    settings = {"nodes": 3, "rendezvous": RENDEZVOUS}
    env = {"SLURM_JOB_NODELIST": "gpu[12-14]", "SLURM_JOB_ID": "99", "SLURMD_NODENAME": "gpu12"}
    first = str(rendezvous_failure(settings, {**env, "SLURM_NODEID": "0"}, "r50", 301))
    assert first.startswith("runs.r50.rendezvous: the 3 nodes of Slurm job 99 (gpu12, gpu13")
    assert "within rendezvous.timeout = 300 s (301 s" in first
    assert "node gpu12 waited for gpu13, gpu14" in first and "gpu12:29500" in first
    env.update(SLURMD_NODENAME="gpu14", SLURM_NODEID="2")
    other = str(rendezvous_failure(settings, env, "r50", 300))
    assert "node gpu14 could not join the first node (gpu12) at gpu12:29500" in other


@pytest.mark.parametrize(
    ("worker", "raises"),
    [
        ("import sys; sys.exit(3)", True),  # exits before any worker ran: no rendezvous
        ("import os, sys; open(os.environ['MASKRCNN_RENDEZVOUS_JOINED'], 'w'); sys.exit(3)", False),
    ],
    ids=["never-met", "met-then-failed"],
)
def test_only_a_torchrun_whose_workers_never_started_is_a_rendezvous_failure(
    monkeypatch: pytest.MonkeyPatch, worker: str, raises: bool
) -> None:
    """run_torchrun tells them apart by the file each worker touches (mark_joined)."""
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n[1-2]")
    monkeypatch.setenv("SLURMD_NODENAME", "n1")
    settings = {"nodes": 2, "rendezvous": RENDEZVOUS}
    command = [sys.executable, "-c", worker]
    if raises:
        with pytest.raises(PipelineError, match="node n1 waited for n2"):
            run_torchrun(settings, command, run="tiny")
    else:
        assert run_torchrun(settings, command, run="tiny") == 3
    assert run_torchrun({**settings, "nodes": 1}, [sys.executable, "-c", worker]) == 3


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("signum", "processes"),
    [(signal.SIGTERM, 1), (signal.SIGUSR1, 2)],
    ids=["sigterm-one-process", "sigusr1-torchrun-two-processes"],
)
def test_stop_signal_saves_a_checkpoint_and_exits_non_zero(
    dataset: Path, tmp_path: Path, signum: int, processes: int
) -> None:
    config = write_config(
        tmp_path,
        cpu_processes=processes,
        solver={"max_iter": 100_000},
        checkpoint={"period": 100_000},
    )
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *train_args(config, dataset, out)],
        cwd=REPO,
        env=tool_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    live = out / "checkpoints" / "metrics.jsonl"
    try:
        wait_for(lambda: live.is_file() and live.stat().st_size > 0, 120, "training to start")
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0
    checkpoints = sorted((out / "checkpoints").glob("model_*.pth"))
    assert len(checkpoints) == 1
    state = torch.load(checkpoints[0], weights_only=False)
    assert f"after iteration {state['iteration']}" in stderr
    settings = train_settings(validate_config(yaml.safe_load(config.read_text())), "tiny")
    assert state["fingerprint"]["code"] == code_digest(REPO, train_code(REPO, settings))
    assert "run the same rule again to resume" in stderr
    assert not (out / "model_final.pth").exists()
    if processes == 1:
        assert process.returncode == 128 + signal.SIGTERM
        lines = [json.loads(x) for x in live.read_text().splitlines()]
        assert lines[-1]["iteration"] <= state["iteration"]
