"""Train one run: assemble data, model, solver and hooks from the run's settings, resume from
the last checkpoint if the same settings, data and code wrote it, and write the final model
and metrics atomically.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from maskrcnn_pipeline.data.coco import CocoInstances, collate
from maskrcnn_pipeline.data.sampler import GroupedBatchSampler
from maskrcnn_pipeline.data.transforms import RandomFlips
from maskrcnn_pipeline.errors import DataError, PipelineError
from maskrcnn_pipeline.fileio import atomic_path
from maskrcnn_pipeline.model.build import build_model
from maskrcnn_pipeline.model.precision import resolve_precision
from maskrcnn_pipeline.provenance import sha256_file, write_provenance
from maskrcnn_pipeline.train.checkpoint import Checkpointer, save_torch
from maskrcnn_pipeline.train.data_error import record_data_error
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
    #: the run's precision setting resolved for the device (``auto`` -> fp32/fp16/bf16)
    precision: str


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
    """Model, optimizer (linear scaling rule), LR schedule, gradient scaler and resolved
    precision of a run."""
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
    precision = resolve_precision(settings["precision"], device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return Components(model, optimizer, scheduler, scaler, channels_last, precision)


#: Settings of periodic evaluation: they change what is logged and where training may stop
#: early, not the weights of any iteration, so a checkpoint written under others is resumed.
#: (The operational settings, threads, periods, workers, are no params at all:
#: workflow/params.py; scripts/train.py passes the params as ``resume_settings``.)
EVALUATION_KEYS = ("eval_period", "early_stop", "test")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def settings_digest(settings: Mapping[str, Any]) -> str:
    """The run's settings that can change the weights: all but EVALUATION_KEYS."""
    return _digest({k: v for k, v in settings.items() if k not in EVALUATION_KEYS})


def data_digest(dataset: CocoInstances, annotations: Path) -> str:
    """The training annotations (sha256) and the image files training reads: name and size
    of each. The size stands for the content, which would cost a read of every image (18 GB
    for COCO): a re-encoded or replaced image changes it; a file in the images folder that
    no annotation uses cannot change the weights and is not listed."""
    files = []
    for index in range(len(dataset)):
        name = dataset.image_info(index)["file_name"]
        path = dataset.images_dir / name
        try:
            files.append((name, path.stat().st_size))
        except FileNotFoundError as exc:
            raise PipelineError(
                f"{path}: training image not found, though {annotations} lists it; "
                "validate the dataset or fix the images folder"
            ) from exc
    return _digest([sha256_file(annotations), files])


#: What a checkpoint must hold to be resumed (Trainer.state_dict plus the fingerprint): one
#: without them is set aside as corrupt, and an older one tried.
RESUME_KEYS = ("iteration", "model", "optimizer", "scheduler", "rng", "hooks", "fingerprint")

#: The parts of a resume fingerprint, each a digest, stored separately in every checkpoint
#: so that a refused resume can say which one changed.
FINGERPRINT_PARTS = ("settings", "data", "code")


def resume_fingerprint(
    settings: Mapping[str, Any], dataset: CocoInstances, annotations: Path, code_digest: str
) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the run's training settings, the training
    data and the training code (``code_digest``, of the import closure scripts/train.py
    runs). Anything else (new LR, new data, edited code) starts over."""
    return {
        "settings": settings_digest(settings),
        "data": data_digest(dataset, annotations),
        "code": code_digest,
    }


def changed_parts(saved: Any, current: Mapping[str, str]) -> list[str]:
    """The fingerprint parts in which a checkpoint's ``saved`` fingerprint differs; all of
    them for a checkpoint written before fingerprints had parts."""
    if not isinstance(saved, Mapping):
        saved = {}
    return [part for part in FINGERPRINT_PARTS if saved.get(part) != current[part]]


def load_resume_state(
    checkpointer: Checkpointer, fingerprint: Mapping[str, str], dist: DistInfo
) -> dict[str, Any] | None:
    """The newest checkpoint when it matches ``fingerprint``; otherwise the checkpoints are
    moved aside (Checkpointer.retire), a warning names what changed, and None."""
    state = checkpointer.load_latest(required=RESUME_KEYS)
    if state is None:
        return None
    changed = changed_parts(state.get("fingerprint"), fingerprint)
    if not changed:
        log.info("resuming from iteration %d", state["iteration"])
        return state
    barrier(dist)  # every process has read the directory before rank 0 moves it
    if dist.is_main:
        moved = checkpointer.retire()
        log.warning(
            "checkpoints in %s were written with other %s: moved to %s, training starts "
            "from scratch",
            checkpointer.directory,
            " and ".join(changed),
            moved,
        )
    barrier(dist)
    return None


def train(
    settings: Mapping[str, Any],
    paths: TrainPaths,
    *,
    code_digest: str,
    resume_settings: Mapping[str, Any] | None = None,
    hooks: Sequence[Hook] = (),
) -> None:
    """Train (or resume) to ``solver.max_iter`` and write the final outputs.

    ``code_digest`` identifies the training code (scripts/train.py computes it from the
    code it runs): a checkpoint of other code is not resumed. ``resume_settings``: the part
    of ``settings`` a checkpoint must have been written under to be resumed; scripts/train.py
    passes the rule's params, leaving out the operational settings (threads, checkpoint and
    log periods, DataLoader workers: workflow/params.py). Default: all of ``settings``.
    ``hooks`` run after the run's own (:func:`run_hooks`), so a caller adds behaviour
    without editing this module. A :class:`DataError` (an image that cannot be read) is
    recorded for the rule's retries to recognise (train/data_error.py).
    """
    dist = init_distributed(settings["gpus"] > 0)
    try:
        identity = settings if resume_settings is None else resume_settings
        device = select_device(settings, dist)
        _train(settings, paths, device, dist, code_digest, identity, hooks)
        barrier(dist)  # rank 0 has written the final outputs: every process tears down together
    except DataError as exc:
        raise record_data_error(paths.out_dir, exc) from None
    finally:
        shutdown(dist)


def _train(
    settings: Mapping[str, Any],
    paths: TrainPaths,
    device: torch.device,
    dist: DistInfo,
    code_digest: str,
    resume_settings: Mapping[str, Any],
    extra_hooks: Sequence[Hook],
) -> None:
    prepare_process(settings, dist)
    dataset = training_dataset(settings, paths)
    log.info("%d training images, %d categories", len(dataset), len(dataset.categories))
    # Resolved once (`precision: auto`): what it means on this machine is what the weights
    # depend on, so a bf16 checkpoint is not resumed on a CPU that would go on in fp32.
    precision = resolve_precision(settings["precision"], device)
    resolved = {**settings, "precision": precision}
    identity = {**resume_settings, "precision": precision}
    fingerprint = resume_fingerprint(identity, dataset, paths.annotations, code_digest)
    checkpointer = Checkpointer(paths.checkpoints, settings["checkpoint"]["keep"])
    state = load_resume_state(checkpointer, fingerprint, dist)
    trainer = build_trainer(resolved, dataset, device, dist, state["iteration"] if state else 0)
    checkpoint = PeriodicCheckpoint(checkpointer, settings["checkpoint"]["period"], fingerprint)
    metrics = MetricsWriter(paths.live_metrics, settings["log_period"])
    trainer.hooks = [
        *run_hooks(resolved, paths, dataset, metrics, checkpoint),
        *extra_hooks,
    ]
    if state is not None:
        # After the loader's iterator exists (build_trainer): creating it draws a seed from
        # the global RNG, so it must come before the RNG state is restored for a resumed
        # run to continue the exact random stream.
        trainer.load_state_dict(state)
    run_or_checkpoint(trainer, checkpoint)
    verify_replicas_in_sync(trainer.module, dist)
    if dist.is_main:
        save_final(paths, trainer, dataset, settings, training_seconds=metrics.elapsed())


def stop_loader_workers(batches: Any) -> None:
    """End a DataLoader iterator's worker processes now, whatever ended the loop.

    The workers ignore stop signals (they must outlive the checkpoint a SIGTERM asks for),
    so only the iterator's own shutdown ends them; torch calls it when the iterator is
    collected, which an error raised from a worker delays past the interpreter's exit (torch
    re-raises it from a frame that refers to it: a reference cycle that holds the iterator),
    where multiprocessing then waits for the workers forever. torch has no public close for
    the iterator: this is what its ``__del__`` calls.
    """
    shutdown_workers = getattr(batches, "_shutdown_workers", None)
    if shutdown_workers is not None:
        shutdown_workers()


def prepare_process(settings: Mapping[str, Any], dist: DistInfo) -> None:
    """Thread count and seeds of this process, before anything draws a random number."""
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    seed_everything(settings["seed"], dist.rank)


def build_trainer(
    settings: Mapping[str, Any],
    dataset: CocoInstances,
    device: torch.device,
    dist: DistInfo,
    start_iter: int,
) -> Trainer:
    """The trainer of a run: model, solver and the batches from ``start_iter`` on (the
    sampler skips the batches a resumed run already trained on); no hooks yet."""
    components = build_components(settings, len(dataset.categories), device, dist)
    batches = iter(make_loader(dataset, settings, dist, start_iter))
    model: nn.Module = components.model
    if dist.distributed:
        model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )
    return Trainer(
        model=model,
        optimizer=components.optimizer,
        scheduler=components.scheduler,
        batches=batches,
        device=device,
        max_iter=settings["solver"]["max_iter"],
        precision=components.precision,
        clip_grad_norm=settings["solver"]["clip_grad_norm"],
        scaler=components.scaler,
        dist=dist,
        iteration=start_iter,
    )


def run_hooks(
    settings: Mapping[str, Any],
    paths: TrainPaths,
    dataset: CocoInstances,
    metrics: MetricsWriter,
    checkpoint: PeriodicCheckpoint,
) -> list[Hook]:
    """The run's hooks, in the order they run after each iteration:

    1. ``metrics`` first, so the log line of an iteration is written before its checkpoint
       (a resume from iteration N keeps the log up to N: every line it needs is there);
    2. ``checkpoint`` before the evaluation, so a failing evaluation leaves a checkpoint to
       debug (Detectron2's order);
    3. the evaluation (eval_period > 0), which publishes its AP for ``metrics`` to write and
       may end training early;
    4. progress last: it only reports.
    """
    return [
        metrics,
        checkpoint,
        *periodic_evaluation(settings, paths, dataset),
        Progress(settings["log_period"]),
    ]


def run_or_checkpoint(trainer: Trainer, checkpoint: PeriodicCheckpoint) -> None:
    """Run the loop with the stop signals routed to it; when one stopped it, save a
    checkpoint (every process takes part) and raise TrainingInterrupted."""
    with handling(STOP_SIGNALS, lambda signum, frame: trainer.request_stop(signum)):
        try:
            trainer.run()
        finally:
            # Stop the loader's workers through their queues and drop the iterator. Left to
            # interpreter exit, they would be sent SIGTERM, which they ignore (see
            # _ignore_stop_signals), and exit would hang; the iterator's finaliser alone is
            # not enough when a worker's error is being raised (stop_loader_workers).
            stop_loader_workers(trainer.batches)
            trainer.batches = iter(())
        if trainer.interrupted:
            saved = checkpoint.save(trainer)
            barrier(trainer.dist)
            raise TrainingInterrupted(
                trainer.stop_signal or signal.SIGTERM, trainer.iteration, saved
            )


def periodic_evaluation(
    settings: Mapping[str, Any], paths: TrainPaths, dataset: CocoInstances
) -> list[Hook]:
    """The evaluation hook when the run asks for one (eval_period > 0).

    Imported only then: the workflow leaves the hook's modules (inference, evaluation) out
    of the train rule's code inputs when eval_period is 0, so editing them cannot retrain a
    run that never evaluates (workflow/code_inputs.py: train_code).
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
            categories=dataset.categories,
            images=paths.eval_images,
            annotations=paths.eval_annotations,
            settings=settings,
            workers=settings["dataloader"]["workers"],
        )
    ]


def save_final(
    paths: TrainPaths,
    trainer: Trainer,
    dataset: CocoInstances,
    settings: Mapping[str, Any],
    *,
    training_seconds: float,
) -> None:
    """model_final.pth (weights + everything needed to rebuild the model and map labels back
    to the dataset's category ids), metrics.jsonl and provenance.json: each complete or
    absent."""
    final = {
        "model": trainer.module.state_dict(),
        "model_settings": settings["model"],
        "input_settings": settings["input"],
        "categories": dataset.categories.to_list(),
        "iteration": trainer.iteration,
    }
    save_torch(final, paths.out_dir / "model_final.pth")  # byte-reproducible
    with atomic_path(paths.out_dir / "metrics.jsonl") as tmp:
        shutil.copyfile(paths.live_metrics, tmp)
    write_provenance(
        paths.out_dir / "provenance.json",
        settings=settings,
        inputs=[paths.annotations],
        device=trainer.device,
        extra={
            "training_seconds": round(training_seconds, 3),
            "iterations": final["iteration"],
            "precision": trainer.precision,  # what precision auto resolved to on this device
        },
    )
    log.info("wrote %s", paths.out_dir / "model_final.pth")
