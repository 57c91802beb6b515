"""One training across two Slurm nodes, through profiles/slurm, on this one machine.

tests/support/slurm_cluster.py starts a two-node cluster: each slurmd in its own network
namespace (a veth pair into a bridge, its own address on a private /24) and UTS namespace
(hostname = NodeName), slurmctld and munged on the host side. The tiny run with ``nodes: 2``
and one gloo process per node goes through the plugin's sbatch (--nodes=2); srun starts one
launcher per node and they meet through torchrun's c10d rendezvous on the first node's
address. As in tests/test_slurm.py the apptainer test double stands in for Apptainer.

- The weights are bit-identical to the same run on one node with two processes.
- Preempted (scancel --signal=USR1, as Slurm does before a time limit), the training stops
  with a checkpoint that rank 0 alone writes, and the train rule's retry resumes from it.
  Then node 2 is lost (every process on it killed): Slurm sets it DOWN and requeues the job,
  the node comes back (its slurmd restarted) and the requeued job resumes from the last
  periodic checkpoint. The weights equal the uninterrupted run's; no process is left behind.
- A node whose network is cut before it joins fails the attempt within rendezvous.timeout,
  with a message that names the node and the timeout; the retry (network back) completes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml

from tests.support.container import Apptainer, workflow_copy
from tests.support.paths import TESTS_DATA
from tests.support.slurm_cluster import (
    NODE_INTERFACE,
    LocalSlurm,
    Node,
    local_slurm,
    profile_command,
    sbatch_calls,
    slurm_logs,
    why_not_runnable,
)
from tests.support.workflow import run_script

pytestmark = pytest.mark.slow

NODES = 2
MAX_ITER = 100
TRAIN_TARGET = "results/tiny/train/model_final.pth"
TRAIN_LOG = "results/logs/train/tiny.log"
#: Bounds each snakemake run (the plugin can wait forever: tests/support/slurm_cluster.py).
TIMEOUT_S = 240
RENDEZVOUS_TIMEOUT_S = 15


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalSlurm]:
    reason = why_not_runnable(nodes=NODES)
    if reason:
        pytest.skip(reason)
    with local_slurm(nodes=NODES) as running:
        yield running


def tiny_config(**run: object) -> dict:
    """tests/data/tiny.yaml with the run trained long enough to be interrupted."""
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    settings = config["runs"]["tiny"]
    settings["solver"]["max_iter"] = MAX_ITER
    settings["checkpoint"] = {"period": 10, "keep": 5}
    settings.update(run)
    return config


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def start(workdir: Path, apptainer: Apptainer, *extra: str) -> subprocess.Popen[str]:
    """snakemake through profiles/slurm for the training only, its output in snakemake.out."""
    return subprocess.Popen(
        profile_command(TIMEOUT_S, *extra, TRAIN_TARGET),
        cwd=workdir,
        env=apptainer.env(),
        stdout=(workdir / "snakemake.out").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], workdir: Path) -> str:
    process.wait(timeout=TIMEOUT_S + 30)
    return (workdir / "snakemake.out").read_text()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def two_nodes(
    cluster: LocalSlurm, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, Apptainer]:
    """The uninterrupted two-node training: its workflow folder, snakemake's output."""
    root = tmp_path_factory.mktemp("nodes")
    workdir = workflow_copy(root / "wf", config=None)
    write_config(workdir, tiny_config(nodes=NODES, cpu_processes=1))
    apptainer = Apptainer(root)
    output = finish(start(workdir, apptainer), workdir)
    assert (workdir / TRAIN_TARGET).is_file(), output[-6000:]
    return workdir, output, apptainer


def copy_without_training(reference: Path, dest: Path) -> None:
    """The workflow folder of ``reference`` with its dataset and image, but no training."""
    shutil.copytree(reference, dest)
    for done in ("results/tiny/train", "results/logs/train", ".snakemake/slurm_logs"):
        shutil.rmtree(dest / done)


def weights(model: Path) -> dict[str, torch.Tensor]:
    return torch.load(model, weights_only=False)["model"]


def assert_bit_identical(got: Path, expected: Path) -> None:
    got_weights, expected_weights = weights(got), weights(expected)
    assert got_weights.keys() == expected_weights.keys()
    differing = [
        name
        for name, tensor in expected_weights.items()
        if not torch.equal(got_weights[name], tensor)
    ]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"


def leftovers(cluster: LocalSlurm) -> dict[str, list[str]]:
    """Per node, the processes in its namespace besides its slurmd (name and arguments)."""
    found = {}
    for node in cluster.nodes:
        slurmd = cluster.daemons[f"slurmd:{node.name}"].pid
        others = cluster.pids_on(node) - {slurmd}
        found[node.name] = [command_line(pid) for pid in sorted(others)]
    return {name: commands for name, commands in found.items() if commands}


def assert_nothing_left(cluster: LocalSlurm, timeout: float = 120) -> None:
    """Every process of the job ends on both nodes (Slurm kills what outlives a step)."""
    deadline = time.monotonic() + timeout
    while leftovers(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not leftovers(cluster), f"left behind after {timeout} s: {leftovers(cluster)}"
    cluster.wait_idle()


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""  # it ended meanwhile


def launcher_running(cluster: LocalSlurm, node: Node) -> bool:
    return any("scripts/train.py" in command_line(pid) for pid in cluster.pids_on(node))


def running_job() -> str:
    jobs = subprocess.run(
        ["squeue", "--noheader", "--states=RUNNING", "--format=%i"],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout.split()
    return jobs[0] if len(jobs) == 1 else ""


def logged_iterations(workdir: Path) -> list[int]:
    live = workdir / "results" / "tiny" / "train" / "checkpoints" / "metrics.jsonl"
    if not live.is_file():
        return []
    return [json.loads(line)["iteration"] for line in live.read_text().splitlines() if line]


def test_one_training_on_two_nodes_equals_two_processes_on_one(
    two_nodes: tuple[Path, str, Apptainer], tmp_path: Path
) -> None:
    workdir, output, _ = two_nodes
    (call,) = sbatch_calls(output, "train")
    flags = call.split()
    for flag in ("--nodes=2", "--ntasks=2", "--cpus-per-task=1"):
        assert flag in flags
    log = (workdir / TRAIN_LOG).read_text()
    assert "process 0 of 2 (local rank 0) on mrcnn-n1" in log
    assert "process 1 of 2 (local rank 0) on mrcnn-n2" in log
    # every process logs the digest of its weights: one digest, from both processes
    (digest,) = set(re.findall(r"model replicas identical on 2 processes \(sha256 (\w+)\)", log))

    # the same training on one node, two gloo processes (torchrun --standalone)
    config = tiny_config(nodes=1, cpu_processes=2)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    data = workdir / "data" / "tiny"
    args = ["--config", str(tmp_path / "config.yaml"), "--run", "tiny"]
    args += [
        "--images",
        str(data / "train"),
        "--annotations",
        str(data / "annotations" / "train.json"),
    ]
    result = run_script("train.py", [*args, "--out-dir", str(tmp_path / "one")])
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"model replicas identical on 2 processes (sha256 {digest})" in result.stderr
    assert_bit_identical(workdir / TRAIN_TARGET, tmp_path / "one" / "model_final.pth")


def rank_logs(workdir: Path) -> list[str]:
    """Each torchrun worker's stderr (results/<run>/train/rank_logs/: kept across attempts,
    while Snakemake deletes the job's log before each one), oldest first."""
    folder = workdir / "results" / "tiny" / "train" / "rank_logs"
    logs = sorted(folder.glob("*/attempt_*/*/stderr.log"), key=lambda log: log.stat().st_mtime)
    return [log.read_text(errors="replace") for log in logs]


def in_rank_logs(workdir: Path, pattern: str) -> list[str]:
    return [found for log in rank_logs(workdir) for found in re.findall(pattern, log)]


def test_preempted_then_a_lost_node_the_retries_end_with_the_same_weights(
    cluster: LocalSlurm, two_nodes: tuple[Path, str, Apptainer], tmp_path: Path
) -> None:
    reference, _, _ = two_nodes
    workdir = tmp_path / "wf"
    copy_without_training(reference, workdir)
    apptainer = Apptainer(tmp_path)
    snakemake = start(workdir, apptainer)
    stop = r"training stopped by SIG\w+ after iteration (\d+)"
    try:
        # 1. Slurm's warning before a time limit or preemption, to every task of the job
        wait_for(lambda: logged_iterations(workdir), "training step")
        job = running_job()
        subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=20)
        wait_for(lambda: in_rank_logs(workdir, stop), "stop on the signal")
        (stopped_at,) = {int(it) for it in in_rank_logs(workdir, stop)}  # every rank says so
        # 2. the retry resumes; after its first checkpoint, node 2 dies with its processes
        # and comes back (a node that reboots)
        resumed = f"resuming from iteration {stopped_at}"
        wait_for(lambda: in_rank_logs(workdir, resumed), "the retry", timeout=150)
        wait_for(lambda: logged_iterations(workdir)[-1:] > [20], "a checkpoint after resuming")
        node = cluster.node("mrcnn-n2")
        cluster.crash(node)
        # Slurm sets the node DOWN and requeues the job (--requeue); the node reboots
        wait_for(lambda: "down" in cluster.node_state(), "node 2 down", timeout=90)
        cluster.start_slurmd(node)
        output = finish(snakemake, workdir)
    finally:
        if snakemake.poll() is None:
            snakemake.kill()
    assert snakemake.returncode == 0, output[-6000:]
    # rank 0 alone wrote the stop's checkpoint, once
    saved = rf"saved checkpoint \S+model_{stopped_at:07d}\.pth"
    (writer,) = [log for log in rank_logs(workdir) if re.search(saved, log)]
    assert len(re.findall(saved, writer)) == 1 and "process 0 of 2" in writer
    # resumed from the stop's checkpoint, then from the last one before the node was lost
    resumes = [int(it) for it in in_rank_logs(workdir, r"resuming from iteration (\d+)")]
    assert resumes[:2] == [stopped_at] * 2, resumes  # each rank logs its resume
    assert len(resumes) == 4 and resumes[2] == resumes[3] >= 20 and resumes[2] % 10 == 0, resumes
    details = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, timeout=20
    ).stdout
    assert "Restarts=1" in details and "JobState=COMPLETED" in details, details  # requeued once
    assert_bit_identical(workdir / TRAIN_TARGET, reference / TRAIN_TARGET)
    assert_nothing_left(cluster)
    (workdir / "retries.txt").write_text(
        f"sbatch calls: {len(sbatch_calls(output, 'train'))}, Slurm logs: "
        f"{[log.name for log in slurm_logs(workdir, 'train')]}, resumes: {resumes}\n"
    )


def test_a_node_that_never_joins_fails_the_attempt_within_the_rendezvous_timeout(
    cluster: LocalSlurm, two_nodes: tuple[Path, str, Apptainer], tmp_path: Path
) -> None:
    """Node 2's network is cut while its launcher starts, and restored once the attempt has
    failed: the retry (the train rule's retries, in the same allocation) then completes."""
    reference, _, _ = two_nodes
    workdir = tmp_path / "wf"
    copy_without_training(reference, workdir)
    config = tiny_config(nodes=NODES, cpu_processes=1, rendezvous={"timeout": RENDEZVOUS_TIMEOUT_S})
    write_config(workdir, config)
    node = cluster.node("mrcnn-n2")
    apptainer = Apptainer(tmp_path)
    snakemake = start(workdir, apptainer)
    cut = ["ip", "-n", node.netns, "link", "set", NODE_INTERFACE]
    failure = "did not meet within rendezvous.timeout"
    log = workdir / TRAIN_LOG
    try:
        wait_for(lambda: launcher_running(cluster, node), "launcher on node 2")
        subprocess.run([*cut, "down"], check=True, timeout=20)
        started = time.monotonic()
        wait_for(lambda: log.is_file() and failure in log.read_text(), "the rendezvous failure")
        failed_after = time.monotonic() - started
        failed_log = log.read_text()  # the retry deletes it
    finally:
        subprocess.run([*cut, "up"], check=True, timeout=20)  # the node's network is back
    try:
        output = finish(snakemake, workdir)
    finally:
        if snakemake.poll() is None:
            snakemake.kill()
    message = re.search(rf"error: runs\.tiny\.rendezvous: .*{failure}.*", failed_log)
    assert message, failed_log[-4000:]
    assert f"rendezvous.timeout = {RENDEZVOUS_TIMEOUT_S} s" in message.group(0)
    assert "node mrcnn-n1 waited for mrcnn-n2" in message.group(0)
    assert RENDEZVOUS_TIMEOUT_S <= failed_after < RENDEZVOUS_TIMEOUT_S + 20, failed_after
    (workdir / "rendezvous-failure.txt").write_text(f"{failed_after:.1f} s: {message.group(0)}\n")
    assert snakemake.returncode == 0, output[-6000:]
    assert_bit_identical(workdir / TRAIN_TARGET, reference / TRAIN_TARGET)
    assert_nothing_left(cluster)
