"""Process-group set-up for torchrun, and the few collective helpers training needs.

One code path serves one process (the CPU demo) and torchrun's N processes: without
torchrun's environment variables everything below degrades to the single-process case.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes metrics, checkpoints and final outputs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs) when there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=world_size,
    )
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    # one line per process: which node each rank ran on is in the training's log
    log.info(
        "process %d of %d (local rank %d) on %s",
        info.rank,
        info.world_size,
        info.local_rank,
        socket.gethostname(),
    )
    return info


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over all processes (a copy; the input is left untouched)."""
    if not info.distributed:
        return tensor
    reduced = tensor.clone()
    dist.all_reduce(reduced)
    return reduced / info.world_size


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Free the process group now, while the interpreter is whole.

    The training loop's hooks form reference cycles that keep the DDP model, and through its
    reducer the process group, alive; destroy_process_group alone would leave the group's
    C++ object to interpreter teardown, where gloo's worker threads can abort the process
    (SIGABRT, "terminate called without an active exception") after a successful run.
    """
    if info.distributed and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics).

    DDP sends rank 0's buffers to all at the start of each forward, and then every process
    updates its own copy with its own batch: after a step the processes' BatchNorm statistics
    differ. Anything that uses the model between steps on several processes (evaluation)
    must first make them rank 0's, the model that is saved; the next forward would do the
    same, so training is unchanged.
    """
    if info.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def parameters_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def verify_replicas_in_sync(model: torch.nn.Module, info: DistInfo) -> str:
    """Check that DDP kept every process's weights bit-identical (a desync would silently
    train N different models); raises naming the processes that differ."""
    digest = parameters_digest(model)
    if not info.distributed:
        return digest
    digests: list[str | None] = [None] * info.world_size
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise PipelineError(
            f"model replicas differ across processes after training: {digests}; this is a "
            "bug in distributed training, please report it"
        )
    log.info("model replicas identical on %d processes (sha256 %s)", info.world_size, digest)
    return digest
