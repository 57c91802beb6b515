"""A grid of validation images with the model's masks, boxes and scores over faint ground truth.

The images are a fixed sample chosen from their ids, so the figure of one run can be set
beside another's (or the same run's after a change) and show the very same images.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from maskrcnn_pipeline.data.images import read_rgb
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.report.coco_inputs import (
    GroundTruth,
    decode_mask,
    read_ground_truth,
    read_predictions,
)
from maskrcnn_pipeline.report.figures import NothingToPlot, grid_shape, hide_unused, new_figure

MAX_DETECTIONS = 25
"""Per image, the highest-scoring ones only: beyond this the overlays hide the image."""
MAX_DISPLAY_SIDE = 800
"""Images are subsampled to about this many pixels for drawing; the PNG shows fewer anyway."""
MASK_ALPHA = 0.45
LABEL_MARGIN = 0.06
"""Fraction of the image height a label above its box needs; nearer the top it goes inside."""
PANEL_WIDTH = 4.4


@dataclass(frozen=True)
class Example:
    """One image to draw: its pixels and what lies on it."""

    image_id: int
    file_name: str
    pixels: np.ndarray
    detections: list[dict[str, Any]]
    ground_truth: list[dict[str, Any]]


def example_predictions_figure(
    *, predictions: Path, annotations: Path, images: Path, num_examples: int, score_threshold: float
) -> Figure:
    """The figure straight from the evaluation's files: sample, read only those detections,
    draw. Another run over the same annotations gets the same images."""
    ground_truth = read_ground_truth(annotations)
    image_ids = select_examples(candidate_images(ground_truth), num_examples)
    detections = read_predictions(predictions, set(image_ids))
    examples = load_examples(ground_truth, detections, images, image_ids, score_threshold)
    return predictions_figure(examples, ground_truth, score_threshold)


def select_examples(image_ids: Iterable[int], count: int) -> list[int]:
    """``count`` image ids picked by a hash of each id, returned in id order.

    The same on every call and machine (no random state), spread over the whole set, and
    stable when images are added: an id stays chosen unless a new one hashes lower.
    """
    ranked = sorted(set(image_ids), key=lambda i: hashlib.sha256(str(i).encode()).hexdigest())
    return sorted(ranked[:count])


def candidate_images(ground_truth: GroundTruth) -> list[int]:
    """Images with at least one annotation, so the sample shows objects; all if none have."""
    annotated = [i for i in ground_truth.images if ground_truth.annotations.get(i)]
    return annotated or list(ground_truth.images)


def load_examples(
    ground_truth: GroundTruth,
    detections: dict[int, list[dict[str, Any]]],
    images: Path,
    image_ids: list[int],
    score_threshold: float,
) -> list[Example]:
    """Read each sampled image and keep its best detections at or above ``score_threshold``."""
    examples = []
    for image_id in image_ids:
        record = ground_truth.images[image_id]
        kept = [d for d in detections.get(image_id, []) if d["score"] >= score_threshold]
        kept = sorted(kept, key=lambda d: d["score"], reverse=True)[:MAX_DETECTIONS]
        examples.append(
            Example(
                image_id=image_id,
                file_name=str(record["file_name"]),
                pixels=_read_image(images / str(record["file_name"])),
                detections=kept,
                ground_truth=ground_truth.annotations.get(image_id, []),
            )
        )
    return examples


def _read_image(path: Path) -> np.ndarray:
    """Upright RGB pixels, decoded as training and prediction decode them (data/images.py),
    so masks predicted in the upright frame are drawn on the image they were predicted on."""
    if not path.is_file():
        raise PipelineError(
            f"{path}: image not found; does --images point at the split's image folder?"
        )
    return read_rgb(path)


def category_colors(category_ids: Iterable[int]) -> dict[int, tuple[float, float, float]]:
    """A fixed colour per category (by its rank among all ids), the same in every image."""
    palette = colormaps["tab10"].colors
    return {cid: palette[i % len(palette)][:3] for i, cid in enumerate(sorted(category_ids))}


def predictions_figure(
    examples: list[Example], ground_truth: GroundTruth, score_threshold: float
) -> Figure:
    """The grid: one panel per example, three per row."""
    if not examples:
        raise NothingToPlot(f"{ground_truth.path.name} lists no images")
    rows, columns = grid_shape(len(examples))
    aspect = float(np.median([e.pixels.shape[0] / e.pixels.shape[1] for e in examples]))
    fig, axes = new_figure(rows, columns, panel_size=(PANEL_WIDTH, PANEL_WIDTH * aspect + 0.3))
    predicted = {d["category_id"] for example in examples for d in example.detections}
    colors = category_colors(set(ground_truth.category_names) | predicted)
    for ax, example in zip(axes.flat, examples, strict=False):
        draw_example(ax, example, ground_truth, colors)
    hide_unused(axes, len(examples))
    title = f"Predictions with score \u2265 {score_threshold:.2f} (filled, boxed)"
    if any(example.ground_truth for example in examples):
        title += "; ground truth dashed"
    fig.suptitle(title)
    return fig


def draw_example(
    ax: Axes,
    example: Example,
    ground_truth: GroundTruth,
    colors: dict[int, tuple[float, float, float]],
    *,
    title: bool = True,
) -> None:
    """One image with its detections (masks, boxes, labels) and ground-truth outlines.

    ``ground_truth`` gives the category names; ``title`` adds the file name and counts above
    the image (the grid wants it, a full-size overlay does not).
    """
    height, width = example.pixels.shape[:2]
    step = max(1, math.ceil(max(height, width) / MAX_DISPLAY_SIDE))
    extent = (0, width, height, 0)
    ax.imshow(example.pixels[::step, ::step], extent=extent, interpolation="antialiased")
    overlay = _mask_overlay(example, colors)
    if overlay is not None:
        ax.imshow(overlay[::step, ::step], extent=extent, interpolation="nearest")
    _draw_ground_truth(ax, example, step)
    for detection in example.detections:
        _draw_box(
            ax,
            detection,
            ground_truth.category_name(detection["category_id"]),
            colors[detection["category_id"]],
            height,
        )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    if title:
        counts = f"{len(example.detections)} detections"
        if ground_truth.annotations:  # an image index without annotations has no ground truth
            counts += f", {len(example.ground_truth)} ground truth"
        ax.set_title(f"{example.file_name[-28:]}\n{counts}", fontsize=8)


def _mask_overlay(
    example: Example, colors: dict[int, tuple[float, float, float]]
) -> np.ndarray | None:
    """An RGBA layer with every predicted mask; higher scores are painted last, on top."""
    height, width = example.pixels.shape[:2]
    overlay = np.zeros((height, width, 4), dtype=np.float32)
    painted = False
    for detection in sorted(example.detections, key=lambda d: d["score"]):
        segmentation = detection.get("segmentation")
        if segmentation is None:
            continue
        mask = decode_mask(
            segmentation, height, width, where=f"detection on image {example.image_id}"
        )
        overlay[mask] = (*colors[detection["category_id"]], MASK_ALPHA)
        painted = True
    return overlay if painted else None


def _draw_ground_truth(ax: Axes, example: Example, step: int) -> None:
    """Ground-truth outlines as faint dashed contours, from polygons and crowd RLEs alike."""
    height, width = example.pixels.shape[:2]
    xs, ys = np.arange(0, width, step), np.arange(0, height, step)
    for annotation in example.ground_truth:
        if "segmentation" not in annotation:
            continue
        mask = decode_mask(
            annotation["segmentation"],
            height,
            width,
            where=f"ground truth annotation {annotation.get('id')}",
        )
        sampled = mask[::step, ::step]
        if sampled.any() and not sampled.all():
            ax.contour(
                xs,
                ys,
                sampled.astype(np.float32),
                levels=[0.5],
                colors="white",
                linewidths=1.0,
                linestyles="dashed",
                alpha=0.8,
            )


def _draw_box(
    ax: Axes,
    detection: dict[str, Any],
    name: str,
    color: tuple[float, float, float],
    image_height: int,
) -> None:
    """The box with its label above it, or just inside when above would fall off the image."""
    x, y, w, h = (float(v) for v in detection["bbox"])
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=1.4))
    inside = y < LABEL_MARGIN * image_height
    ax.text(
        x,
        y,
        f"{name} {detection['score']:.2f}",
        fontsize=6.5,
        color="white",
        va="top" if inside else "bottom",
        ha="left",
        clip_on=True,
        bbox={"facecolor": color, "alpha": 0.85, "pad": 1.0, "edgecolor": "none"},
    )
