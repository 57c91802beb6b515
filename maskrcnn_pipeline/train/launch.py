"""How a run's training processes are started: in-process, or under torchrun.

One process per GPU (NCCL), or ``cpu_processes`` processes on the CPU (gloo), per node. A run
with a single process trains in-process; anything more is handed to torchrun, which this
module runs as a child so that Slurm's signals (SIGTERM at preemption or the time limit,
SIGUSR1 from ``--signal``) reach every worker as SIGTERM, and the workers save a checkpoint
before they exit. Multi-node runs are started by ``srun`` (one launcher per node) and meet
through torchrun's c10d rendezvous on the job's first node, within the run's
``rendezvous.timeout``: a node that never joins fails the attempt with a message naming it,
instead of a job that waits until its time limit.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.train.signals import handling

log = logging.getLogger(__name__)

#: Set for torchrun's workers: a file that each touches once it runs. torchrun starts the
#: workers only after its rendezvous, so a launcher whose torchrun failed without it knows
#: the nodes never met.
JOINED_VARIABLE = "MASKRCNN_RENDEZVOUS_JOINED"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def processes_per_node(settings: Mapping[str, Any]) -> int:
    return settings["gpus"] if settings["gpus"] > 0 else settings["cpu_processes"]


def under_torchrun(env: Mapping[str, str]) -> bool:
    """True inside a worker that torchrun started (it sets these for every worker)."""
    return "LOCAL_RANK" in env and "WORLD_SIZE" in env


def needs_torchrun(settings: Mapping[str, Any]) -> bool:
    return settings["nodes"] > 1 or processes_per_node(settings) > 1


def is_first_node(env: Mapping[str, str]) -> bool:
    """Whether this launcher runs on the job's first node (always, outside a Slurm step)."""
    return env.get("SLURM_NODEID", "0") == "0"


def check_gpus(settings: Mapping[str, Any], visible: int, run: str | None = None) -> None:
    """Stop before any work when the node has fewer GPUs than the run asks for."""
    wanted = settings["gpus"]
    if wanted > visible:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        raise PipelineError(
            f"runs.{run or '<run>'}.gpus: the run asks for {wanted} GPU(s) per node but this "
            f"node has {visible} visible (CUDA_VISIBLE_DEVICES={shown}); lower gpus, or run on "
            "a node with enough GPUs (on Slurm the train job requests them: see profiles/slurm)"
        )


def prediction_layout(settings: Mapping[str, Any], visible: int) -> dict[str, int]:
    """The processes of a predict job, on its one node: one per GPU of the run that the node
    has, or the run's ``cpu_processes`` on a node without GPUs.

    Unlike training, fewer GPUs than the run trained on is no error: the predictions do not
    depend on how many processes make them (inference/sharding.py), so a model trained on a
    cluster can be evaluated on a workstation; the log says how many are used.
    """
    wanted = settings["gpus"]
    gpus = min(wanted, visible)
    if gpus < wanted:
        log.warning(
            "the run has %d GPU(s) per node and this node %d: predicting with %s",
            wanted,
            visible,
            f"{gpus} GPU process(es)" if gpus else f"{settings['cpu_processes']} CPU process(es)",
        )
    return {"nodes": 1, "gpus": gpus, "cpu_processes": settings["cpu_processes"]}


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def hosts_of(nodelist: str) -> list[str]:
    """The hosts of a Slurm node list (``gpu[01-02,07],cpu1`` -> gpu01 gpu02 gpu07 cpu1).

    Parsed here because ``scontrol show hostnames`` is not inside the container image the
    launchers run in. One bracket per name, as Slurm writes the lists of its jobs.
    """
    hosts: list[str] = []
    for prefix, ranges, suffix in re.findall(r"([^,\[]+)(?:\[([^\]]+)\])?([^,\[]*),?", nodelist):
        if not ranges:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            if not (first.isdigit() and (not last or last.isdigit())):
                raise PipelineError(f"SLURM_JOB_NODELIST={nodelist!r}: not a Slurm node list")
            for number in range(int(first), int(last or first) + 1):
                hosts.append(f"{prefix}{number:0{len(first)}d}{suffix}")
    if not hosts:
        raise PipelineError(f"SLURM_JOB_NODELIST={nodelist!r}: not a Slurm node list")
    return hosts


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``gpu[01-04,07],cpu1`` -> ``gpu01``)."""
    return hosts_of(nodelist)[0]


def rendezvous_host(env: Mapping[str, str]) -> str:
    """Where the c10d store lives: the node srun was started from (one of the job's nodes,
    running a launcher itself), else the first node of the job."""
    return env.get("SLURM_LAUNCH_NODE_IPADDR") or first_host(env["SLURM_JOB_NODELIST"])


def rendezvous_args(settings: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """torchrun's node arguments: standalone on one node, c10d rendezvous across nodes."""
    nodes = settings["nodes"]
    if nodes == 1:
        return ["--standalone", "--nnodes=1"]
    if "SLURM_JOB_NODELIST" not in env:
        raise PipelineError(
            f"runs.<run>.nodes: {nodes} nodes need a Slurm allocation (srun starts one "
            "launcher per node); run through profiles/slurm, or set nodes: 1"
        )
    if int(env.get("SLURM_NNODES", nodes)) != nodes:
        raise PipelineError(
            f"runs.<run>.nodes: the run asks for {nodes} nodes but the Slurm job has "
            f"{env.get('SLURM_NNODES')}; check the train rule's resources"
        )
    rendezvous = settings["rendezvous"]
    timeout = rendezvous["timeout"]
    return [
        f"--nnodes={nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={rendezvous_host(env)}:{rendezvous['port']}",
        f"--rdzv-id={env.get('SLURM_JOB_ID', 'maskrcnn')}",
        # join: the first node waits this long for the others; read: the others wait this
        # long to reach the first node's store (torchrun's defaults: 600 and 60 s)
        f"--rdzv-conf=join_timeout={timeout},read_timeout={timeout}",
    ]


#: In a run's training folder: every torchrun worker's stdout and stderr, one folder per
#: launcher and attempt (``<job>_<random>/attempt_0/<local rank>/``). Snakemake deletes a
#: job's log before each attempt; these stay, so what each process of a stopped or failed
#: attempt said (on which node) can still be read.
RANK_LOGS = "rank_logs"


def torchrun_command(
    settings: Mapping[str, Any],
    script: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path | None = None,
) -> list[str]:
    """torchrun on ``script``; with ``log_dir``, each worker's output is also kept there
    (``--tee 3``: the job's log still gets it, each line prefixed with the local rank)."""
    logs = ["--log-dir", str(log_dir), "--tee", "3"] if log_dir else []
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous_args(settings, env),
        f"--nproc-per-node={processes_per_node(settings)}",
        *logs,
        script,
        *args,
    ]


def run_forwarding_signals(
    command: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[int, bool]:
    """Run ``command``; SIGTERM, SIGUSR1 and SIGINT become SIGTERM for it. Its exit code, and
    whether a signal was forwarded."""
    child = subprocess.Popen(command, env=env)
    forwarded = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal forwarded
        forwarded = True
        log.warning(
            "received %s: asking training to checkpoint and stop", signal.Signals(signum).name
        )
        child.send_signal(signal.SIGTERM)

    with handling(FORWARDED_SIGNALS, forward):
        return child.wait(), forwarded


def mark_joined(env: Mapping[str, str]) -> None:
    """In a torchrun worker: tell the launcher that the rendezvous completed."""
    marker = env.get(JOINED_VARIABLE)
    if marker:
        Path(marker).touch()


def rendezvous_failure(
    settings: Mapping[str, Any], env: Mapping[str, str], run: str | None, waited: float
) -> PipelineError:
    """What a launcher says when its torchrun ended before the nodes met: which node waited
    for which, how long, and the setting that bounds it."""
    here = env.get("SLURMD_NODENAME") or socket.gethostname()
    nodes = hosts_of(env["SLURM_JOB_NODELIST"])
    endpoint = f"{rendezvous_host(env)}:{settings['rendezvous']['port']}"
    timeout = settings["rendezvous"]["timeout"]
    others = ", ".join(node for node in nodes if node != here) or "the others"
    where = (
        f"node {here} waited for {others}"
        if is_first_node(env)
        else f"node {here} could not join the first node ({nodes[0]}) at {endpoint}"
    )
    return PipelineError(
        f"runs.{run or '<run>'}.rendezvous: the {settings['nodes']} nodes of Slurm job "
        f"{env.get('SLURM_JOB_ID', '?')} ({', '.join(nodes)}) did not meet within "
        f"rendezvous.timeout = {timeout} s ({waited:.0f} s, torchrun's error above): {where}. "
        f"Check that node's Slurm log and that every node reaches {endpoint} (port: "
        "rendezvous.port; on nodes with several interfaces set GLOO_SOCKET_IFNAME or "
        "NCCL_SOCKET_IFNAME to the one they share)"
    )


def run_torchrun(
    settings: Mapping[str, Any], command: Sequence[str], run: str | None = None
) -> int:
    """Run torchrun and return its exit code; raise naming the node when a multi-node
    rendezvous ended without the nodes meeting (and no stop signal ended it)."""
    with tempfile.TemporaryDirectory(prefix="maskrcnn-rendezvous-") as folder:
        marker = Path(folder) / "joined"
        started = time.monotonic()
        code, stopped = run_forwarding_signals(
            command, {**os.environ, JOINED_VARIABLE: str(marker)}
        )
        met = marker.exists()
    if code != 0 and settings["nodes"] > 1 and not met and not stopped:
        raise rendezvous_failure(settings, os.environ, run, time.monotonic() - started)
    return code
