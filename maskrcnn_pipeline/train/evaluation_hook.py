"""Evaluation during training: AP against iteration, and NVIDIA-style early stop.

Every ``eval_period`` iterations each process predicts its share of the eval split with the
current weights; rank 0 gathers the results and computes the COCO metrics, and the hook
publishes them (:meth:`Trainer.publish`) for the metrics writer to log as
``{"iteration": N, "eval": {"bbox": {...}, "segm": {...}}}`` (the report plots AP against
iteration from it). When every configured target AP is reached, training ends there, as
NVIDIA's MLPerf runs do (``--min_bbox_map``/``--min_mask_map``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from maskrcnn_pipeline.data.coco import Categories
from maskrcnn_pipeline.evaluation import evaluate_coco
from maskrcnn_pipeline.inference.predict import (
    ImageEntry,
    Predictor,
    images_from_annotations,
    predict_entries,
)
from maskrcnn_pipeline.inference.sharding import Shard
from maskrcnn_pipeline.metrics_log import EVAL_KEY
from maskrcnn_pipeline.model.build import inference_mode
from maskrcnn_pipeline.train.distributed import broadcast_buffers
from maskrcnn_pipeline.train.loop import Hook, StepResult, Trainer

log = logging.getLogger(__name__)

#: early_stop keys -> (iou type, stat)
TARGETS = {"bbox_ap": ("bbox", "AP"), "segm_ap": ("segm", "AP")}


def targets_reached(
    stats: Mapping[str, Mapping[str, float]], early_stop: Mapping[str, Any]
) -> bool:
    """True when at least one target is set and every set target is reached."""
    wanted = {key: value for key, value in early_stop.items() if value is not None}
    return bool(wanted) and all(
        stats[TARGETS[key][0]][TARGETS[key][1]] >= value for key, value in wanted.items()
    )


class PeriodicEvaluation(Hook):
    """AP of the model being trained every ``eval_period`` iterations; ends training when
    the early-stop targets are reached."""

    def __init__(
        self,
        *,
        categories: Categories,
        entries: Sequence[ImageEntry],
        annotations: Path,
        settings: Mapping[str, Any],
        workers: int,
    ) -> None:
        self.categories = categories
        self.entries = entries
        self.annotations = annotations
        self.period = settings["eval_period"]
        self.test = settings["test"]
        self.early_stop = settings["early_stop"]
        self.precision = settings["precision"]
        self.workers = workers

    @classmethod
    def for_split(cls, *, images: Path, annotations: Path, **kwargs: Any) -> PeriodicEvaluation:
        """The hook for an eval split on disk (its images listed in its annotation file)."""
        entries = images_from_annotations(images, annotations)
        return cls(entries=entries, annotations=annotations, **kwargs)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.iteration % self.period or trainer.interrupted:
            return
        stats = self.evaluate(trainer)
        trainer.publish(result.iteration, {EVAL_KEY: stats})
        if trainer.dist.is_main:
            log.info(
                "iteration %d: bbox AP %.4f, segm AP %.4f",
                result.iteration,
                stats["bbox"]["AP"],
                stats["segm"]["AP"],
            )
        if targets_reached(stats, self.early_stop):
            log.info("target AP reached at iteration %d: stopping early", result.iteration)
            trainer.finished_early = True

    def evaluate(self, trainer: Trainer) -> dict[str, dict[str, float]]:
        """Prediction sharded by batches over every process, metrics on rank 0, shared
        with all (the same path as the predict job's)."""
        info, model = trainer.dist, trainer.module
        broadcast_buffers(model, info)  # every process evaluates the model rank 0 saves
        predictor = Predictor(model, self.categories, trainer.device, self.precision)
        shard = Shard(info.rank, info.world_size)
        with inference_mode(model, self.test):
            batch_size = self.test["ims_per_batch"]
            results = predict_entries(
                predictor, self.entries, batch_size, self.workers, shard=shard
            )
        stats: list[Any] = [None]
        if results is not None:
            evaluated = evaluate_coco(self.annotations, results, iou_types=("bbox", "segm"))
            stats = [evaluated.stats]
        if info.distributed:
            dist.broadcast_object_list(stats, src=0)
        return stats[0]
