"""The training loop: one function per phase, periodic work in hooks.

:meth:`Trainer.run` reads like the algorithm (fetch a batch, one optimisation step, tell the
hooks); metric logging, checkpoints and progress are hooks (:mod:`maskrcnn_pipeline.hooks`)
in the style of Detectron2, not branches inside the loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from maskrcnn_pipeline.data.coco import Target
from maskrcnn_pipeline.distributed import DistInfo, all_reduce_mean
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.solver import IterationLR

log = logging.getLogger(__name__)

Batch = tuple[list[torch.Tensor], list[Target]]
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class StepResult:
    """What one iteration reports to the hooks (losses averaged over all processes)."""

    iteration: int
    losses: dict[str, float]
    lr: float
    images: int
    step_time: float
    data_time: float


class Hook:
    """Periodic work around the loop; override what you need."""

    def before_train(self, trainer: Trainer) -> None:
        """Called once, after resume, before the first iteration."""

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        """Called after every iteration."""

    def after_train(self, trainer: Trainer) -> None:
        """Called once when ``max_iter`` is reached (not when training stops early)."""


@dataclass
class Trainer:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: IterationLR
    batches: Iterator[Batch]
    device: torch.device
    max_iter: int
    precision: str = "fp32"
    clip_grad_norm: float | None = None
    channels_last: bool = False
    scaler: torch.amp.GradScaler | None = None
    dist: DistInfo = field(default_factory=DistInfo)
    hooks: Sequence[Hook] = ()
    iteration: int = 0
    stop_requested: bool = False

    def autocast(self) -> AbstractContextManager:
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def to_device(self, batch: Batch) -> Batch:
        """Move a batch to the device; images become float in [0, 1] there (uint8 travels)."""
        images, targets = batch
        images = [image.to(self.device, non_blocking=True).float().div_(255) for image in images]
        if self.channels_last:
            images = [image.contiguous(memory_format=torch.channels_last) for image in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        return images, targets

    def train_step(self, batch: Batch) -> dict[str, float]:
        """Forward, non-finite check, backward, clip, step: one optimisation step."""
        images, targets = self.to_device(batch)
        with self.autocast():
            loss_dict = self.model(images, targets)
        total = sum(loss_dict.values())
        detached = {k: v.detach() for k, v in loss_dict.items()}
        reported = self._reduce({"loss": total.detach(), **detached})
        if not all(map(math.isfinite, reported.values())):
            details = ", ".join(f"{k}={v:.4g}" for k, v in reported.items())
            raise PipelineError(
                f"non-finite loss at iteration {self.iteration + 1} ({details}); lower "
                "solver.base_lr, lengthen solver.warmup_iters or set solver.clip_grad_norm"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            self._clip()
            self.optimizer.step()
        self.scheduler.step()
        return reported

    def _clip(self) -> None:
        if self.clip_grad_norm is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)

    def _reduce(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        stacked = all_reduce_mean(torch.stack([v.float() for v in losses.values()]), self.dist)
        return dict(zip(losses, stacked.tolist(), strict=True))

    def run(self) -> None:
        """Train from ``self.iteration`` to ``max_iter`` (or until a stop is requested)."""
        self.model.train()
        for hook in self.hooks:
            hook.before_train(self)
        while self.iteration < self.max_iter and not self.stop_requested:
            started = time.perf_counter()
            batch = next(self.batches)
            fetched = time.perf_counter()
            lr = self.scheduler.current_lr()
            losses = self.train_step(batch)
            self.iteration += 1
            result = StepResult(
                iteration=self.iteration,
                losses=losses,
                lr=lr,
                images=len(batch[0]) * self.dist.world_size,
                step_time=time.perf_counter() - started,
                data_time=fetched - started,
            )
            for hook in self.hooks:
                hook.after_step(self, result)
        if self.iteration >= self.max_iter:
            for hook in self.hooks:
                hook.after_train(self)
