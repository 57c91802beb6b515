"""Training and inference throughput, the equivalents of NVIDIA's train_benchmark.sh and
inference_benchmark.sh.

Both time the project's own code paths (the same model, optimizer, precision and
channels-last handling as training and prediction) on synthetic data of a chosen size, or on
a real COCO-format split, and report images/s; inference also reports latency percentiles
per batch size. GPU work is synchronised before every clock read.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from maskrcnn_pipeline.data.coco import Target
from maskrcnn_pipeline.model.build import configure_inference
from maskrcnn_pipeline.train.distributed import DistInfo
from maskrcnn_pipeline.train.loop import Batch, Trainer

log = logging.getLogger(__name__)


def synthetic_sample(
    height: int, width: int, num_classes: int, generator: torch.Generator, objects: int = 7
) -> tuple[torch.Tensor, Target]:
    """A random uint8 image with ``objects`` rectangular instances (COCO averages ~7)."""
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    corners = torch.rand(objects, 2, generator=generator) * torch.tensor(
        [width * 0.8, height * 0.8]
    )
    sizes = 16 + torch.rand(objects, 2, generator=generator) * torch.tensor([width, height]) * 0.3
    boxes = torch.cat([corners, (corners + sizes).clamp(max=torch.tensor([width, height]))], 1)
    masks = torch.zeros(objects, height, width, dtype=torch.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.round().int().tolist(), strict=True):
        mask[y0:y1, x0:x1] = 1
    labels = torch.randint(1, num_classes + 1, (objects,), generator=generator)
    return image, {"boxes": boxes, "labels": labels, "masks": masks}


def synthetic_batches(
    batch_size: int, height: int, width: int, num_classes: int, *, pool: int = 16, seed: int = 0
) -> Iterator[Batch]:
    """Endless batches drawn from a small pool of pre-generated samples (no data cost)."""
    generator = torch.Generator().manual_seed(seed)
    samples = [synthetic_sample(height, width, num_classes, generator) for _ in range(pool)]
    index = 0
    while True:
        batch = [samples[(index + i) % pool] for i in range(batch_size)]
        index += batch_size
        yield [s[0] for s in batch], [dict(s[1]) for s in batch]


def benchmark_device(settings: Mapping[str, Any]) -> torch.device:
    """The run's device, with its thread count applied (as training and predict do)."""
    from maskrcnn_pipeline.train.run import select_device

    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    return select_device(settings)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_training(
    settings: Mapping[str, Any],
    batches: Iterator[Batch],
    *,
    num_classes: int,
    device: torch.device,
    iterations: int,
    warmup: int,
) -> dict[str, Any]:
    """Images/s and ms/iteration of ``iterations`` training steps after ``warmup`` steps."""
    from maskrcnn_pipeline.train.run import build_components

    components = build_components(settings, num_classes, device, DistInfo())
    trainer = Trainer(
        model=components.model,
        optimizer=components.optimizer,
        scheduler=components.scheduler,
        batches=batches,
        device=device,
        max_iter=warmup,
        precision=components.precision,
        clip_grad_norm=settings["solver"]["clip_grad_norm"],
        scaler=components.scaler,
    )
    trainer.run()
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    trainer.max_iter = warmup + iterations
    trainer.run()
    _synchronize(device)
    seconds = time.perf_counter() - started
    batch = settings["solver"]["ims_per_gpu"]
    figures = {
        "iterations": iterations,
        "batch_size": batch,
        "seconds": round(seconds, 4),
        "images_per_s": round(iterations * batch / seconds, 3),
        "ms_per_iteration": round(1000 * seconds / iterations, 3),
        "precision": components.precision,
        "channels_last": components.channels_last,
        "device": str(device),
    }
    if device.type == "cuda":
        figures["max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return figures


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_figures(latencies: Sequence[float], batch_size: int) -> dict[str, float]:
    """Mean and percentile latency per batch (ms) and the throughput they imply."""
    return {
        "batch_size": batch_size,
        "iterations": len(latencies),
        "latency_ms_mean": round(1000 * statistics.fmean(latencies), 3),
        "latency_ms_p50": round(1000 * _percentile(latencies, 0.50), 3),
        "latency_ms_p90": round(1000 * _percentile(latencies, 0.90), 3),
        "latency_ms_p99": round(1000 * _percentile(latencies, 0.99), 3),
        "images_per_s": round(batch_size * len(latencies) / sum(latencies), 3),
    }


def benchmark_inference(
    model: torch.nn.Module,
    images: Sequence[torch.Tensor],
    *,
    test_settings: Mapping[str, Any],
    precision: str,
    channels_last: bool,
    device: torch.device,
    batch_sizes: Sequence[int],
    iterations: int,
    warmup: int,
) -> list[dict[str, float]]:
    """Latency of whole predict calls (the project's Predictor: transfer, forward, batched
    mask pasting, masks back on the CPU; not the RLE encoding, which runs beside the next
    batch) per batch size."""
    from maskrcnn_pipeline.data.categories import Categories
    from maskrcnn_pipeline.inference.predict import Predictor

    configure_inference(model, test_settings)
    model = model.to(device).eval()
    if channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    predictor = Predictor(model, Categories((), ()), device, precision)
    results = []
    for batch_size in batch_sizes:
        latencies = []
        for step in range(warmup + iterations):
            batch = [images[(step * batch_size + i) % len(images)] for i in range(batch_size)]
            _synchronize(device)
            started = time.perf_counter()
            predictor(batch)
            _synchronize(device)
            if step >= warmup:
                latencies.append(time.perf_counter() - started)
        results.append(latency_figures(latencies, batch_size))
        log.info("batch %d: %s", batch_size, results[-1])
    return results


def real_batches(
    settings: Mapping[str, Any], images: Path, annotations: Path
) -> tuple[Iterator[Batch], int]:
    """Batches of a real COCO-format split through the training data pipeline."""
    from maskrcnn_pipeline.train.run import TrainPaths, make_loader, training_dataset

    dataset = training_dataset(settings, TrainPaths(images, annotations, Path(".")))
    return iter(make_loader(dataset, settings, DistInfo(), 0)), len(dataset.categories)
