"""Train one run: assemble data, model, solver and hooks from the run's settings, resume from
the last checkpoint if there is one, and write the final model and metrics atomically.

Outputs in ``out_dir``: ``model_final.pth`` (weights + everything needed to rebuild the model
and map labels back to the dataset's category ids), ``metrics.jsonl`` and
``provenance.json``. Resume state stays in ``out_dir/checkpoints/``.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from maskrcnn_pipeline.checkpoint import Checkpointer, rng_state, set_rng_state
from maskrcnn_pipeline.data.coco import CocoInstances, collate
from maskrcnn_pipeline.data.sampler import GroupedBatchSampler
from maskrcnn_pipeline.data.transforms import RandomFlips
from maskrcnn_pipeline.distributed import DistInfo, barrier, init_distributed, shutdown
from maskrcnn_pipeline.engine import Batch, Trainer
from maskrcnn_pipeline.fileio import atomic_path
from maskrcnn_pipeline.hooks import MetricsWriter, PeriodicCheckpoint, Progress
from maskrcnn_pipeline.model import build_model
from maskrcnn_pipeline.provenance import write_provenance
from maskrcnn_pipeline.solver import (
    IterationLR,
    Schedule,
    build_optimizer,
    parameter_groups,
    scaled_lr,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    images: Path
    annotations: Path
    out_dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def live_metrics(self) -> Path:
        """Appended during training; copied to metrics.jsonl when training completes."""
        return self.checkpoints / "metrics.jsonl"


def select_device(settings: Mapping[str, Any]) -> torch.device:
    return torch.device("cuda" if settings["gpus"] > 0 else "cpu")


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def endless(loader: DataLoader) -> Iterator[Batch]:
    """The loader's sampler is endless already; this only makes the iterator explicit."""
    yield from loader


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
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=settings["gpus"] > 0,
        persistent_workers=workers > 0,
    )


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def train(settings: Mapping[str, Any], paths: TrainPaths) -> None:
    """Train (or resume) to ``solver.max_iter`` and write the final outputs."""
    device = select_device(settings)
    dist = init_distributed(device.type == "cuda")
    try:
        _train(settings, paths, device, dist)
    finally:
        shutdown(dist)


def _train(
    settings: Mapping[str, Any], paths: TrainPaths, device: torch.device, dist: DistInfo
) -> None:
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    seed_everything(settings["seed"], dist.rank)
    solver = settings["solver"]
    input_settings = settings["input"]
    dataset = CocoInstances(
        paths.images,
        paths.annotations,
        train=True,
        transform=RandomFlips(input_settings["horizontal_flip"], input_settings["vertical_flip"]),
        cache=settings["dataloader"]["cache_images"],
    )
    log.info("%d training images, %d categories", len(dataset), len(dataset.categories))
    model = build_model(
        settings["model"], num_classes=len(dataset.categories), input_settings=input_settings
    ).to(device)
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

    checkpointer = Checkpointer(paths.checkpoints, settings["checkpoint"]["keep"])
    state = checkpointer.load_latest()
    start_iter, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][dist.rank] if isinstance(state["rng"], list) else state["rng"])
        start_iter, elapsed = state["iteration"], state.get("elapsed", 0.0)

    train_model: nn.Module = model
    if dist.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if device.type == "cuda" else None
        )
    metrics = MetricsWriter(paths.live_metrics, settings["log_period"], elapsed=elapsed)
    trainer = Trainer(
        model=train_model,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=endless(make_loader(dataset, settings, dist, start_iter)),
        device=device,
        max_iter=solver["max_iter"],
        precision=settings["precision"],
        clip_grad_norm=solver["clip_grad_norm"],
        channels_last=channels_last,
        scaler=scaler,
        dist=dist,
        iteration=start_iter,
    )

    def training_state() -> dict[str, Any]:
        return {
            "iteration": trainer.iteration,
            "elapsed": metrics.elapsed(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        }

    trainer.hooks = [
        metrics,
        PeriodicCheckpoint(checkpointer, settings["checkpoint"]["period"], training_state),
        Progress(settings["log_period"]),
    ]
    trainer.run()
    barrier(dist)
    if dist.is_main:
        final = {
            "model": model.state_dict(),
            "model_settings": settings["model"],
            "input_settings": input_settings,
            "categories": dataset.categories.to_list(),
            "iteration": trainer.iteration,
        }
        save_final(paths, final, settings, device, training_seconds=metrics.elapsed())


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
