"""How a run's training processes are started: in-process, or under torchrun.

One process per GPU (NCCL), or ``cpu_processes`` processes on the CPU (gloo), per node. A run
with a single process trains in-process; anything more is handed to torchrun, which this
module runs as a child so that Slurm's signals (SIGTERM at preemption or the time limit,
SIGUSR1 from ``--signal``) reach every worker as SIGTERM, and the workers save a checkpoint
before they exit. Multi-node runs are started by ``srun`` (one launcher per node) and meet
through torchrun's c10d rendezvous on the job's first node.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.train.signals import handling

log = logging.getLogger(__name__)

RENDEZVOUS_PORT = 29500
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


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``gpu[01-04,07],cpu1`` -> ``gpu01``).

    Parsed here because ``scontrol`` is not inside the container image the launchers run in.
    """
    match = re.match(r"([^,\[]+)(?:\[([^,\]-]+))?", nodelist)
    if not match:
        raise PipelineError(f"SLURM_JOB_NODELIST={nodelist!r}: not a Slurm node list")
    prefix, first = match.groups()
    return prefix + (first or "")


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
    host = rendezvous_host(env)
    return [
        f"--nnodes={nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:{RENDEZVOUS_PORT}",
        f"--rdzv-id={env.get('SLURM_JOB_ID', 'maskrcnn')}",
    ]


def torchrun_command(
    settings: Mapping[str, Any], script: str, args: Sequence[str], env: Mapping[str, str]
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous_args(settings, env),
        f"--nproc-per-node={processes_per_node(settings)}",
        script,
        *args,
    ]


def run_forwarding_signals(command: Sequence[str]) -> int:
    """Run ``command``; SIGTERM, SIGUSR1 and SIGINT become SIGTERM for it. Its exit code."""
    child = subprocess.Popen(command)

    def forward(signum: int, frame: FrameType | None) -> None:
        log.warning(
            "received %s: asking training to checkpoint and stop", signal.Signals(signum).name
        )
        child.send_signal(signal.SIGTERM)

    with handling(FORWARDED_SIGNALS, forward):
        return child.wait()
