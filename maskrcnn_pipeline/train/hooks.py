"""The periodic work of training, as hooks: metric logging, checkpoints, progress.

Only the main process (rank 0) writes files; every hook is a no-op elsewhere.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from maskrcnn_pipeline.metrics_log import append_record, truncate_after
from maskrcnn_pipeline.train.checkpoint import Checkpointer
from maskrcnn_pipeline.train.loop import Hook, StepResult, Trainer

log = logging.getLogger(__name__)


class MetricsWriter(Hook):
    """The one writer of the live metrics log: a JSON line per ``period`` iterations, and a
    line for whatever another hook publishes (the evaluation hook's AP).

    Each training line holds the mean of every loss over the period, the LR, images/s,
    seconds per iteration, the data-wait time and the wall time since training started
    (across resumes: the elapsed time is this hook's resumable state). On resume, lines after
    the checkpoint's iteration are dropped first, so the log never holds an iteration twice.
    """

    def __init__(self, path: Path, period: int) -> None:
        self.path = path
        self.period = period
        self.elapsed_before = 0.0
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0
        self._started = time.perf_counter()

    def before_train(self, trainer: Trainer) -> None:
        if trainer.dist.is_main:
            truncate_after(self.path, trainer.iteration)
        self._started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training so far, the runs before a resume included."""
        return self.elapsed_before + time.perf_counter() - self._started

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.elapsed_before = state["elapsed"]

    def on_publish(self, trainer: Trainer, iteration: int, values: Mapping[str, Any]) -> None:
        if trainer.dist.is_main:
            append_record(self.path, {"iteration": iteration, **values})

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        for key, value in result.losses.items():
            self._sums[key] += value
        for key in ("step_time", "data_time"):
            self._sums[key] += getattr(result, key)
        self._sums["images"] += result.images
        self._count += 1
        if result.iteration % self.period == 0 or result.iteration == trainer.max_iter:
            self._write(trainer, result)

    def _write(self, trainer: Trainer, result: StepResult) -> None:
        sums, count = self._sums, self._count
        record: dict[str, Any] = {
            "iteration": result.iteration,
            "seconds": round(self.elapsed(), 3),
        }
        record["lr"] = result.lr
        record.update({k: v / count for k, v in sums.items() if k.startswith("loss")})
        record["images_per_s"] = sums["images"] / sums["step_time"]
        record["time_per_iter"] = sums["step_time"] / count
        record["data_time"] = sums["data_time"] / count
        if trainer.device.type == "cuda":
            record["max_memory_mb"] = torch.cuda.max_memory_allocated(trainer.device) / 2**20
        self._sums, self._count = defaultdict(float), 0
        if trainer.dist.is_main:
            append_record(self.path, record)


class PeriodicCheckpoint(Hook):
    """Saves the full training state (:meth:`Trainer.state_dict`) every ``period``
    iterations, with the ``fingerprint`` a later run must match to resume from it.

    Every process builds the state (it gathers each process's RNG state, a collective);
    rank 0 alone writes it.
    """

    def __init__(
        self, checkpointer: Checkpointer, period: int, fingerprint: Mapping[str, str]
    ) -> None:
        self.checkpointer = checkpointer
        self.period = period
        self.fingerprint = dict(fingerprint)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.iteration % self.period or result.iteration >= trainer.max_iter:
            return
        self.save(trainer)

    def save(self, trainer: Trainer) -> Path:
        """Checkpoint the current iteration (every process calls it); its path."""
        state = {**trainer.state_dict(), "fingerprint": self.fingerprint}
        if trainer.dist.is_main:
            self.checkpointer.save(trainer.iteration, state)
        return self.checkpointer.path_for(trainer.iteration)


class Progress(Hook):
    """A tqdm bar in a terminal; a log line every ``period`` iterations otherwise."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.bar: tqdm | None = None

    def before_train(self, trainer: Trainer) -> None:
        if trainer.dist.is_main and sys.stderr.isatty():
            self.bar = tqdm(total=trainer.max_iter, initial=trainer.iteration, unit="it")

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if not trainer.dist.is_main:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{result.losses['loss']:.3f}", lr=f"{result.lr:.2e}")
        elif result.iteration % self.period == 0 or result.iteration == trainer.max_iter:
            log.info(
                "iteration %d/%d loss %.4f lr %.3g %.2f s/it",
                result.iteration,
                trainer.max_iter,
                result.losses["loss"],
                result.lr,
                result.step_time,
            )

    def after_train(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
