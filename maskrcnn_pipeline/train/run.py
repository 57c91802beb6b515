"""Train one run: assemble data, model, solver and hooks from the run's settings, resume from
the last checkpoint if there is one, and write the final model and metrics atomically.

Outputs in ``out_dir``: ``model_final.pth`` (weights + everything needed to rebuild the model
and map labels back to the dataset's category ids), ``metrics.jsonl`` and
``provenance.json``. Resume state stays in ``out_dir/checkpoints/``. On SIGTERM or SIGUSR1
(preemption, time limit) every process finishes its iteration, rank 0 saves a checkpoint
and training exits with :class:`TrainingInterrupted`; the next run resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed
from torch import nn
from torch.utils.data import DataLoader

from maskrcnn_pipeline.data.coco import CocoInstances, collate
from maskrcnn_pipeline.data.sampler import GroupedBatchSampler
from maskrcnn_pipeline.data.transforms import RandomFlips
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import atomic_path
from maskrcnn_pipeline.model.build import build_model
from maskrcnn_pipeline.provenance import sha256_file, write_provenance
from maskrcnn_pipeline.train.checkpoint import Checkpointer, rng_state, set_rng_state
from maskrcnn_pipeline.train.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    shutdown,
    verify_replicas_in_sync,
)
from maskrcnn_pipeline.train.hooks import MetricsWriter, PeriodicCheckpoint, Progress
from maskrcnn_pipeline.train.loop import Hook, Trainer
from maskrcnn_pipeline.train.optimizer import IterationLR, build_optimizer, parameter_groups
from maskrcnn_pipeline.train.schedule import Schedule, scaled_lr
from maskrcnn_pipeline.train.signals import handling

log = logging.getLogger(__name__)

#: Signals that mean "save and stop": Slurm sends SIGTERM at preemption and at the time
#: limit, and SIGUSR1 ahead of it when asked to (sbatch --signal=USR1@<seconds>).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(PipelineError):
    """Training stopped on a signal after saving a checkpoint; a rerun resumes from it."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path) -> None:
        self.exit_code = 128 + signum
        super().__init__(
            f"training stopped by {signal.Signals(signum).name} after iteration {iteration}; "
            f"saved {checkpoint}; run the same rule again to resume from it"
        )


@dataclass(frozen=True)
class TrainPaths:
    images: Path
    annotations: Path
    out_dir: Path
    eval_images: Path | None = None
    eval_annotations: Path | None = None

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def live_metrics(self) -> Path:
        """Appended during training; copied to metrics.jsonl when training completes."""
        return self.checkpoints / "metrics.jsonl"


@dataclass
class Components:
    """Everything that holds training state, built the same way for training and benchmarks."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: IterationLR
    scaler: torch.amp.GradScaler | None
    channels_last: bool


def select_device(settings: Mapping[str, Any], dist: DistInfo | None = None) -> torch.device:
    if settings["gpus"] == 0:
        return torch.device("cpu")
    return torch.device("cuda", dist.local_rank if dist else 0)


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave stop signals to the training process, which must outlive
    them long enough to save a checkpoint."""
    for sig in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def make_loader(
    dataset: CocoInstances, settings: Mapping[str, Any], dist: DistInfo, start_batch: int
) -> DataLoader:
    loader_settings = settings["dataloader"]
    sampler = GroupedBatchSampler(
        dataset.aspect_ratios(),
        settings["solver"]["ims_per_gpu"],
        seed=settings["seed"],
        rank=dist.rank,
        world_size=dist.world_size,
        group_by_aspect_ratio=loader_settings["aspect_ratio_grouping"],
        start_batch=start_batch,
    )
    workers = loader_settings["workers"]
    if workers:
        torch.multiprocessing.set_sharing_strategy(loader_settings["sharing_strategy"])
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=settings["gpus"] > 0,
        persistent_workers=workers > 0,
        worker_init_fn=_ignore_stop_signals if workers > 0 else None,
        timeout=loader_settings["timeout"] if workers > 0 else 0,
    )


def training_dataset(settings: Mapping[str, Any], paths: TrainPaths) -> CocoInstances:
    input_settings, loader = settings["input"], settings["dataloader"]
    return CocoInstances(
        paths.images,
        paths.annotations,
        train=True,
        transform=RandomFlips(input_settings["horizontal_flip"], input_settings["vertical_flip"]),
        cache=loader["cache_images"],
        decode=not (loader["gpu_decode"] and settings["gpus"] > 0),
    )


def build_components(
    settings: Mapping[str, Any], num_classes: int, device: torch.device, dist: DistInfo
) -> Components:
    """Model, optimizer (linear scaling rule), LR schedule and gradient scaler of a run."""
    solver = settings["solver"]
    model = build_model(
        settings["model"], num_classes=num_classes, input_settings=settings["input"]
    )
    model = model.to(device)
    if settings["model"]["norm"] == "bn" and dist.distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # Weights in channels-last make cuDNN run the convolutions NHWC; the batched input and
    # every activation follow the weights' layout.
    channels_last = settings["channels_last"] and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    global_batch = solver["ims_per_gpu"] * dist.world_size
    lr = scaled_lr(solver, global_batch)
    log.info(
        "linear scaling rule: base_lr %g at batch %d -> lr %g at global batch %d (%d x %d)",
        solver["base_lr"],
        solver["reference_batch_size"],
        lr,
        global_batch,
        dist.world_size,
        solver["ims_per_gpu"],
    )
    optimizer = build_optimizer(
        parameter_groups(model, solver, lr), solver, fused=device.type == "cuda"
    )
    scheduler = IterationLR(optimizer, Schedule.from_settings(solver, lr / solver["base_lr"]))
    scaler = torch.amp.GradScaler(device.type) if settings["precision"] == "fp16" else None
    return Components(model, optimizer, scheduler, scaler, channels_last)


def gather_rng_states(dist: DistInfo) -> list[dict[str, Any]]:
    """Every process's RNG state (the RPN/RoI samplers draw from them), for rank 0 to save."""
    state = rng_state()
    if not dist.distributed:
        return [state]
    states: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def restore(components: Components, state: Mapping[str, Any], dist: DistInfo) -> None:
    components.model.load_state_dict(state["model"])
    components.optimizer.load_state_dict(state["optimizer"])
    components.scheduler.load_state_dict(state["scheduler"])
    if components.scaler is not None and state.get("scaler"):
        components.scaler.load_state_dict(state["scaler"])
    states = state["rng"]
    if len(states) == dist.world_size:
        set_rng_state(states[dist.rank])
    else:
        log.warning(
            "checkpoint holds RNG states of %d processes, this run has %d: RNG not restored",
            len(states),
            dist.world_size,
        )


#: Settings of periodic evaluation: they change what is logged and where training may stop
#: early, not the weights of any iteration, so a checkpoint written under others is resumed.
EVALUATION_KEYS = ("eval_period", "early_stop", "test")


def resume_fingerprint(settings: Mapping[str, Any], annotations: Path) -> str:
    """What a checkpoint must match to be resumed: the settings that can change the weights
    and the training annotations. Anything else (new LR, new data) starts over."""
    relevant = {k: v for k, v in settings.items() if k not in EVALUATION_KEYS}
    text = json.dumps(relevant, sort_keys=True) + sha256_file(annotations)
    return hashlib.sha256(text.encode()).hexdigest()


def load_resume_state(
    checkpointer: Checkpointer, fingerprint: str, dist: DistInfo
) -> dict[str, Any] | None:
    state = checkpointer.load_latest()
    if state is None or state.get("fingerprint") == fingerprint:
        return state
    barrier(dist)  # every process has read the directory before rank 0 moves it
    if dist.is_main:
        moved = checkpointer.retire()
        log.warning(
            "checkpoints in %s were written with other settings or data: moved to %s, "
            "training starts from scratch",
            checkpointer.directory,
            moved,
        )
    barrier(dist)
    return None


def train(
    settings: Mapping[str, Any],
    paths: TrainPaths,
    *,
    resume_settings: Mapping[str, Any] | None = None,
) -> None:
    """Train (or resume) to ``solver.max_iter`` and write the final outputs.

    ``resume_settings``: the part of ``settings`` a checkpoint must have been written under
    to be resumed; scripts/train.py passes the rule's params, leaving out the operational
    settings (threads, checkpoint and log periods, DataLoader workers: workflow/params.py).
    Default: all of ``settings``.
    """
    dist = init_distributed(settings["gpus"] > 0)
    try:
        identity = settings if resume_settings is None else resume_settings
        _train(settings, paths, select_device(settings, dist), dist, identity)
        barrier(dist)  # rank 0 has written the final outputs: every process tears down together
    finally:
        shutdown(dist)


def _train(
    settings: Mapping[str, Any],
    paths: TrainPaths,
    device: torch.device,
    dist: DistInfo,
    resume_settings: Mapping[str, Any],
) -> None:
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    seed_everything(settings["seed"], dist.rank)
    dataset = training_dataset(settings, paths)
    log.info("%d training images, %d categories", len(dataset), len(dataset.categories))
    components = build_components(settings, len(dataset.categories), device, dist)

    checkpointer = Checkpointer(paths.checkpoints, settings["checkpoint"]["keep"])
    fingerprint = resume_fingerprint(resume_settings, paths.annotations)
    state = load_resume_state(checkpointer, fingerprint, dist)
    start_iter = state["iteration"] if state else 0
    elapsed = state.get("elapsed", 0.0) if state else 0.0
    # The loader's iterator draws a seed from the global RNG when created: create it before
    # the RNG state is restored, so a resumed run continues the exact random stream.
    batches = iter(make_loader(dataset, settings, dist, start_iter))
    if state is not None:
        restore(components, state, dist)

    model = components.model
    train_model: nn.Module = model
    if dist.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    metrics = MetricsWriter(paths.live_metrics, settings["log_period"], elapsed=elapsed)
    trainer = Trainer(
        model=train_model,
        optimizer=components.optimizer,
        scheduler=components.scheduler,
        batches=batches,
        device=device,
        max_iter=settings["solver"]["max_iter"],
        precision=settings["precision"],
        clip_grad_norm=settings["solver"]["clip_grad_norm"],
        scaler=components.scaler,
        dist=dist,
        iteration=start_iter,
    )

    def training_state() -> dict[str, Any]:
        return {
            "iteration": trainer.iteration,
            "fingerprint": fingerprint,
            "elapsed": metrics.elapsed(),
            "model": model.state_dict(),
            "optimizer": components.optimizer.state_dict(),
            "scheduler": components.scheduler.state_dict(),
            "scaler": components.scaler.state_dict() if components.scaler else None,
            "rng": gather_rng_states(dist),
        }

    trainer.hooks = [
        metrics,
        PeriodicCheckpoint(checkpointer, settings["checkpoint"]["period"], training_state),
        *periodic_evaluation(settings, paths, model, dataset, metrics),
        Progress(settings["log_period"]),
    ]
    with handling(STOP_SIGNALS, lambda signum, frame: trainer.request_stop(signum)):
        try:
            trainer.run()
        finally:
            # Drop the last references to the loader's iterator: its finaliser stops the worker
            # processes through their queues. Left to interpreter exit, they would be sent
            # SIGTERM, which they ignore (see _ignore_stop_signals), and exit would hang.
            trainer.batches = iter(())
            del batches

        if trainer.interrupted:
            state = training_state()  # collective: every process takes part
            saved = checkpointer.path_for(trainer.iteration)
            if dist.is_main:
                checkpointer.save(trainer.iteration, state)
            barrier(dist)
            raise TrainingInterrupted(
                trainer.stop_signal or signal.SIGTERM, trainer.iteration, saved
            )
        verify_replicas_in_sync(model, dist)
        if dist.is_main:
            final = {
                "model": model.state_dict(),
                "model_settings": settings["model"],
                "input_settings": settings["input"],
                "categories": dataset.categories.to_list(),
                "iteration": trainer.iteration,
            }
            save_final(paths, final, settings, device, training_seconds=metrics.elapsed())


def periodic_evaluation(
    settings: Mapping[str, Any],
    paths: TrainPaths,
    model: nn.Module,
    dataset: CocoInstances,
    metrics: MetricsWriter,
) -> list[Hook]:
    """The evaluation hook when the run asks for one (eval_period > 0).

    Imported only then: the workflow leaves the hook's modules (inference, evaluation) out
    of the train rule's code inputs when eval_period is 0, so editing them cannot retrain a
    run that never evaluates (workflow/code_inputs.py).
    """
    if not settings["eval_period"]:
        return []
    if paths.eval_images is None or paths.eval_annotations is None:
        raise PipelineError(
            "eval_period is set: pass the eval split (--eval-images/--eval-annotations)"
        )
    from maskrcnn_pipeline.train.evaluation_hook import PeriodicEvaluation

    return [
        PeriodicEvaluation.for_split(
            model=model,
            categories=dataset.categories,
            images=paths.eval_images,
            annotations=paths.eval_annotations,
            settings=settings,
            metrics_path=metrics.path,
            workers=settings["dataloader"]["workers"],
        )
    ]


def save_final(
    paths: TrainPaths,
    final: dict[str, Any],
    settings: Mapping[str, Any],
    device: torch.device,
    *,
    training_seconds: float,
) -> None:
    """model_final.pth, metrics.jsonl and provenance.json: each complete or absent."""
    with atomic_path(paths.out_dir / "model_final.pth") as tmp:
        torch.save(final, tmp)
    with atomic_path(paths.out_dir / "metrics.jsonl") as tmp:
        shutil.copyfile(paths.live_metrics, tmp)
    write_provenance(
        paths.out_dir / "provenance.json",
        settings=settings,
        inputs=[paths.annotations],
        device=device,
        extra={"training_seconds": round(training_seconds, 3), "iterations": final["iteration"]},
    )
    log.info("wrote %s", paths.out_dir / "model_final.pth")
