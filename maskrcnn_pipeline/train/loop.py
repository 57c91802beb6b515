"""The training loop: one function per phase, periodic work in hooks.

:meth:`Trainer.run` reads like the algorithm (fetch a batch, one optimisation step, tell the
hooks); metric logging, checkpoints and progress are hooks (:mod:`maskrcnn_pipeline.train.hooks`)
in the style of Detectron2, not branches inside the loop.

Resumable state has one shape, as in Detectron2: :meth:`Trainer.state_dict` holds the
iteration, model, optimizer, scheduler, gradient scaler, every process's RNG state and each
hook's own :meth:`Hook.state_dict`; a checkpoint is that dict, and
:meth:`Trainer.load_state_dict` puts all of it back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from maskrcnn_pipeline.data.coco import Target
from maskrcnn_pipeline.data.transforms import decode_on_device, is_encoded
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.model.precision import autocast
from maskrcnn_pipeline.train.checkpoint import gather_rng_states, restore_rng_states
from maskrcnn_pipeline.train.distributed import DistInfo, all_reduce_mean
from maskrcnn_pipeline.train.optimizer import IterationLR

log = logging.getLogger(__name__)

Batch = tuple[list[torch.Tensor], list[Target]]


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
    """Periodic work around the loop; override what you need.

    A hook gets the trainer as an argument and keeps no reference to it (no cycle between
    them that only the garbage collector could free: see train/distributed.py shutdown).
    """

    def before_train(self, trainer: Trainer) -> None:
        """Called once, after resume, before the first iteration."""

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        """Called after every iteration."""

    def after_train(self, trainer: Trainer) -> None:
        """Called once when training completed (``max_iter`` or an early stop at a target
        AP), not when a signal interrupted it."""

    def on_publish(self, trainer: Trainer, iteration: int, values: Mapping[str, Any]) -> None:
        """Called when a hook publishes results of ``iteration`` (:meth:`Trainer.publish`)."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs of this hook; empty when it holds no resumable state."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass
class Trainer:
    """The loop of one run and the state it advances (the resumable part: :meth:`state_dict`)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: IterationLR
    batches: Iterator[Batch]
    device: torch.device
    max_iter: int
    precision: str = "fp32"
    clip_grad_norm: float | None = None
    scaler: torch.amp.GradScaler | None = None
    dist: DistInfo = field(default_factory=DistInfo)
    hooks: Sequence[Hook] = ()
    iteration: int = 0
    #: set by a signal handler in this process; all processes stop at the same iteration
    stop_signal: int | None = None
    #: True once the processes agreed to stop early because of a signal
    interrupted: bool = False
    #: set by a hook (target AP reached) to end training as if max_iter were reached
    finished_early: bool = False

    @property
    def module(self) -> nn.Module:
        """The model itself, without the DistributedDataParallel wrapper it may train in."""
        if isinstance(self.model, nn.parallel.DistributedDataParallel):
            return self.model.module
        return self.model

    def publish(self, iteration: int, values: Mapping[str, Any]) -> None:
        """Hand results of ``iteration`` (evaluation stats) to every hook: the metrics log
        has one writer (hooks.MetricsWriter), whatever hook produced the values."""
        for hook in self.hooks:
            hook.on_publish(self, iteration, values)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly; a collective (it gathers every
        process's RNG state), so every process calls it."""
        hooks: dict[str, dict[str, Any]] = {}
        for hook in self.hooks:
            name, state = type(hook).__qualname__, hook.state_dict()
            if name in hooks:
                raise PipelineError(f"two {name} hooks hold state: a checkpoint keeps one")
            if state:
                hooks[name] = state
        return {
            "iteration": self.iteration,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": gather_rng_states(self.dist),
            "hooks": hooks,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``; the hooks must be set first."""
        self.iteration = state["iteration"]
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_states(state["rng"], self.dist)
        for hook in self.hooks:
            saved = state["hooks"].get(type(hook).__qualname__)
            if saved is not None:
                hook.load_state_dict(saved)

    def autocast(self) -> AbstractContextManager:
        """Autocast of the (resolved) ``precision``: fp32, fp16 or bf16, never ``auto``."""
        return autocast(self.precision, self.device)

    def to_device(self, batch: Batch) -> Batch:
        """Move a batch to the device; images become float in [0, 1] there (uint8 travels).

        Encoded JPEGs (GPU decoding) are decoded on the device in one batched call.
        """
        images, targets = batch
        if any(map(is_encoded, images)):
            images = decode_on_device(images, targets, self.device)
        images = [image.to(self.device, non_blocking=True).float().div_(255) for image in images]
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
        """Average the losses over all processes; the same collective agrees on stopping.

        A signal may reach the processes at slightly different times: carrying each one's
        stop flag in the loss reduction makes every process stop after the same iteration.
        """
        flag = torch.tensor([float(self.stop_signal is not None)], device=self.device)
        values = torch.cat([torch.stack([v.float() for v in losses.values()]), flag])
        reduced = all_reduce_mean(values, self.dist).tolist()
        self.interrupted = reduced[-1] > 0
        return dict(zip(losses, reduced[:-1], strict=True))

    def request_stop(self, signum: int) -> None:
        """Signal handler: finish this iteration, then stop (the caller checkpoints)."""
        self.stop_signal = signum

    def run(self) -> None:
        """Train from ``self.iteration`` to ``max_iter``, an early stop, or an interruption.

        ``after_train`` hooks run when training completed (``max_iter`` or early stop), not
        when it was interrupted; check :attr:`interrupted` afterwards.
        """
        self.model.train()
        for hook in self.hooks:
            hook.before_train(self)
        while self.iteration < self.max_iter and not self.finished_early:
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
            if self.interrupted:
                return
        for hook in self.hooks:
            hook.after_train(self)
