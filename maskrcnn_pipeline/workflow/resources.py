"""What the train and predict jobs ask a cluster for, from their run's config.

Snakemake resources are names the Slurm executor plugin turns into sbatch flags (runtime ->
-t, mem_mb -> --mem, gpu -> --gpus, gres -> --gres, nodes -> --nodes, tasks -> --ntasks;
tests/test_cluster.py checks the plugin's flags). Every train job gets the same resource
names, so that the rule's ``shell:`` can start with ``{resources.mpi}`` whatever the run:

- one node: ``gpu=<gpus>`` (sbatch --gpus, which the local scheduler can also count) and an
  empty ``mpi``: the job runs its command directly;
- several nodes: ``gres=gpu:<gpus per node>`` (``--gpus`` would be a total for the job),
  ``tasks=<nodes>`` and an ``mpi`` launcher, ``srun --nodes=N --ntasks=N
  --ntasks-per-node=1 --cpus-per-task=T``, that starts the command once per node (torchrun
  then starts one process per GPU). ``tasks_per_gpu=0`` stops the plugin from turning
  ``tasks`` into --ntasks-per-gpu. When jobs run in the Apptainer image, srun itself is not in
  the image, so the launcher ends with ``apptainer exec ... <image>`` and the rule's own
  ``container:`` is off for that job (see rules/common.smk).

No torch here: the Snakefile imports this module.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any


def srun_launcher(nodes: int, threads: int, container: Sequence[str] = ()) -> str:
    """One task per node, each with the job's CPUs, then the command (in the image if given).

    Explicit flags because the slurm-jobstep plugin strips SLURM_* variables before running
    the job's command, so srun cannot take them from the allocation's environment.
    """
    command = [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={threads}",
        "--kill-on-bad-exit=1",
        *container,
    ]
    return shlex.join(command)


def train_resources(
    run: Mapping[str, Any], *, threads: int, container: Sequence[str] = ()
) -> dict[str, int | str]:
    """The train job's resources for a validated run config.

    ``threads`` are the job's CPUs per node (the rule's threads); ``container`` is the
    ``apptainer exec ... <image>`` prefix when jobs run in the image, else empty.
    """
    gpus, nodes = run["gpus"], run["nodes"]
    limits = run["resources"]
    multi_node = nodes > 1
    return {
        "runtime": limits["runtime"],
        "mem_mb": limits["mem_mb_per_gpu"] * max(1, gpus),
        "nodes": nodes,
        "gpu": 0 if multi_node else gpus,
        "gres": f"gpu:{gpus}" if multi_node and gpus > 0 else "",
        "tasks": nodes,
        "tasks_per_gpu": 0,
        "mpi": srun_launcher(nodes, threads, container) if multi_node else "",
    }


def train_threads(run: Mapping[str, Any]) -> int:
    """The CPUs of a job that trains (or tests) a run: its torch threads, or one DataLoader
    worker per worker and process, whichever is more; at least one."""
    return max(1, run["threads"], run["dataloader"]["workers"] * max(1, run["gpus"]))


def prediction_resources(run: Mapping[str, Any]) -> dict[str, int]:
    """A job that predicts with a run's model (predict, infer, NVIDIA's test_net.py): the
    run's GPUs (the images are shared over them), host memory for them, two hours."""
    gpus = run["gpus"]
    memory = run["resources"]["mem_mb_per_gpu"] * max(1, gpus)
    return {"gpu": gpus, "mem_mb": memory, "runtime": 120}
