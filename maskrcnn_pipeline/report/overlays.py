"""Inference overlays: every predicted image with its masks, boxes, classes and scores.

The output of inference on a folder of images (no annotations): one PNG per image, drawn by
the same code as the report's predictions figure, plus a grid of a fixed sample of them for
the HTML report. Image and category ids get their meaning from the image index that predict
writes beside the results (a COCO file without annotations).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from matplotlib.figure import Figure

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.report.coco_inputs import GroundTruth, read_ground_truth, read_predictions
from maskrcnn_pipeline.report.figures import DPI, save_figure
from maskrcnn_pipeline.report.predictions_figure import (
    MAX_DISPLAY_SIDE,
    Example,
    category_colors,
    draw_example,
    example_predictions_figure,
    load_examples,
)

logger = logging.getLogger(__name__)

MIN_OVERLAY_SIDE = 480
"""Smaller images are drawn enlarged to this long side, or their labels would cover them."""


def write_overlays(
    *,
    predictions: Path,
    index: Path,
    images: Path,
    out_dir: Path,
    score_threshold: float,
) -> list[Path]:
    """One ``<image name>.png`` per image of ``index`` in ``out_dir``; return them in id order.

    Images are drawn at their own size (a COCO image stays 640 pixels wide), their long side
    kept between MIN_OVERLAY_SIDE and MAX_DISPLAY_SIDE pixels; detections below
    ``score_threshold`` are left out.
    """
    if not 0.0 <= score_threshold <= 1.0:
        raise PipelineError(f"score_threshold must lie in [0, 1], got {score_threshold}")
    names = read_ground_truth(Path(index))
    image_ids = sorted(names.images)
    detections = read_predictions(Path(predictions), set(image_ids))
    colors = category_colors(names.category_names)
    out_names = overlay_names(str(names.images[i]["file_name"]) for i in image_ids)
    written = []
    for image_id, out_name in zip(image_ids, out_names, strict=True):
        (example,) = load_examples(names, detections, Path(images), [image_id], score_threshold)
        written.append(save_figure(overlay_figure(example, names, colors), out_dir / out_name))
    logger.info("drew %d overlays into %s", len(written), out_dir)
    return written


def overlay_names(file_names: Iterable[str]) -> list[str]:
    """``photo.jpg`` -> ``photo.png``; when two images share a stem (``a.jpg``, ``a.png``)
    both keep their suffix (``a_jpg.png``, ``a_png.png``) so neither overwrites the other."""
    file_names = list(file_names)
    stems = [Path(name).stem for name in file_names]
    return [
        f"{stem}.png" if stems.count(stem) == 1 else f"{stem}_{Path(name).suffix[1:]}.png"
        for stem, name in zip(stems, file_names, strict=True)
    ]


def overlay_figure(
    example: Example, names: GroundTruth, colors: dict[int, tuple[float, float, float]]
) -> Figure:
    """The image filling the whole figure, at its own pixel size within the side limits."""
    height, width = example.pixels.shape[:2]
    long_side = max(height, width)
    scale = min(max(1.0, MIN_OVERLAY_SIDE / long_side), MAX_DISPLAY_SIDE / long_side)
    fig = Figure(figsize=(width * scale / DPI, height * scale / DPI), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    draw_example(ax, example, names, colors, title=False)
    return fig


def sample_figure(
    *, predictions: Path, index: Path, images: Path, num_examples: int, score_threshold: float
) -> Figure:
    """A grid of ``num_examples`` overlays, a fixed sample chosen by image id (as in the run
    report's predictions figure), for the HTML report."""
    return example_predictions_figure(
        predictions=predictions,
        annotations=index,
        images=images,
        num_examples=num_examples,
        score_threshold=score_threshold,
    )
