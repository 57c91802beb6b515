"""An endless, resumable, distributed batch sampler with aspect-ratio grouping.

Training is counted in iterations, not epochs (as in NVIDIA's recipe), so the sampler is an
endless stream of batches that is a pure function of (seed, rank, world size): resuming at
iteration i only skips i batches of indices, no image is read. Each rank gets a disjoint
shard of every epoch's permutation. Batches hold images of one orientation (landscape or
portrait) so that padding to a common size wastes little compute. Every item is an
``(index, seed)`` pair; the seed drives the sample's augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from maskrcnn_pipeline.errors import PipelineError

_SEED_RANGE = 2**31 - 1


class GroupedBatchSampler(Sampler[list[tuple[int, int]]]):
    def __init__(
        self,
        aspect_ratios: Sequence[float],
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        group_by_aspect_ratio: bool = True,
        start_batch: int = 0,
    ) -> None:
        self.groups = [int(r >= 1.0) if group_by_aspect_ratio else 0 for r in aspect_ratios]
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    def _epoch(self, epoch: int) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.groups), generator=generator)
        sample_seeds = torch.randint(_SEED_RANGE, (len(self.groups),), generator=generator)
        buckets: dict[int, list[tuple[int, int]]] = {}
        for position in range(self.rank, len(order), self.world_size):
            index = int(order[position])
            bucket = buckets.setdefault(self.groups[index], [])
            bucket.append((index, int(sample_seeds[position])))
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        emitted = 0
        epoch = 0
        while True:
            produced = False
            for batch in self._epoch(epoch):
                produced = True
                if emitted >= self.start_batch:
                    yield batch
                emitted += 1
            if not produced:
                raise PipelineError(
                    f"{len(self.groups)} training images over {self.world_size} process(es) "
                    f"cannot fill one batch of {self.batch_size} images of one orientation; "
                    "lower solver.ims_per_gpu or set dataloader.aspect_ratio_grouping: false"
                )
            epoch += 1
