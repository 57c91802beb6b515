"""Which images each process predicts, and how the processes' results come back together.

Processes share the work by whole batches, dealt round-robin (batch k to rank k mod N), never
by single images: each batch then holds the same images as in a one-process run, padded to
the same size, so the predictions do not depend on how many processes made them (on one
kind of device). Rank 0 puts the batches back in their order, which is image-id order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.distributed as dist

Item = TypeVar("Item")


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes that predict together."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside a world of {self.world_size}")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


#: The shard of a process that predicts alone.
ONE_PROCESS = Shard()


def batch_indices(count: int, batch_size: int) -> list[list[int]]:
    """Indices 0..count-1 in consecutive batches of ``batch_size`` (the last may be short)."""
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size}: must be at least 1")
    starts = range(0, count, batch_size)
    return [list(range(start, min(start + batch_size, count))) for start in starts]


def batches_of_shard(batches: Sequence[Item], shard: Shard) -> list[Item]:
    """The batches that ``shard`` predicts: every world_size-th one, from its rank."""
    return list(batches[shard.rank :: shard.world_size])


def in_batch_order(per_rank: Sequence[Sequence[Item]]) -> list[Item]:
    """The batches of every rank (as :func:`batches_of_shard` dealt them) in their order."""
    world_size = len(per_rank)
    total = sum(len(batches) for batches in per_rank)
    return [per_rank[index % world_size][index // world_size] for index in range(total)]


def gather_on_main(shard_batches: list[Item], shard: Shard) -> list[Item] | None:
    """Every rank's batches, in batch order, on rank 0 (None elsewhere).

    A collective call: every rank of the process group must make it. Gathered to rank 0
    alone, since only it writes or evaluates the results.
    """
    if shard.world_size == 1:
        return shard_batches
    gathered: list[Any] | None = [None] * shard.world_size if shard.is_main else None
    dist.gather_object(shard_batches, gathered, dst=0)
    return in_batch_order(gathered) if gathered is not None else None
