"""Run a trained model over images and write COCO results (boxes + RLE masks).

The model is rebuilt from the settings saved inside ``model_final.pth`` and its labels are
mapped back to the dataset's category ids, so the results evaluate against the original
annotation file unchanged. Test-time settings (thresholds, sizes) come from the run's
``test`` settings and can change without retraining.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from maskrcnn_pipeline.data.categories import Categories
from maskrcnn_pipeline.data.coco import load_coco, read_image
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_json_atomic
from maskrcnn_pipeline.model.build import build_model, configure_inference
from maskrcnn_pipeline.model.precision import AUTOCAST_DTYPES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ImageEntry:
    image_id: int
    path: Path


def images_from_annotations(images: Path, annotations: Path) -> list[ImageEntry]:
    """Every image of an annotated split, with the annotation file's image ids."""
    coco = load_coco(annotations)
    return [
        ImageEntry(info["id"], images / info["file_name"])
        for info in sorted(coco.imgs.values(), key=lambda info: info["id"])
    ]


def images_from_folder(images: Path) -> list[ImageEntry]:
    """Every image file of a folder (no annotations), numbered 1..N in file-name order."""
    if not images.is_dir():
        raise PipelineError(f"{images}: images folder not found")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PipelineError(f"{images}: no {'/'.join(IMAGE_SUFFIXES)} files in this folder")
    return [ImageEntry(index, path) for index, path in enumerate(files, start=1)]


def image_index(entries: Sequence[ImageEntry], categories: Categories) -> dict[str, Any]:
    """A COCO file without annotations: the predicted images (id, file name, size) and the
    model's categories.

    Written beside the results of a folder without annotations, it is what gives their
    image ids and category ids a meaning: the overlays and any COCO tool read it as the
    ground-truth side. Sizes come from the image headers (no decoding).
    """
    images = []
    for entry in entries:
        try:
            with Image.open(entry.path) as image:
                width, height = image.size
        except OSError as exc:
            raise PipelineError(f"{entry.path}: cannot read image ({exc})") from exc
        images.append(
            {"id": entry.image_id, "file_name": entry.path.name, "width": width, "height": height}
        )
    return {"images": images, "categories": categories.to_list()}


class _Images(Dataset):
    def __init__(self, entries: Sequence[ImageEntry]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        entry = self.entries[index]
        return entry.image_id, read_image(entry.path)


@dataclass
class Predictor:
    model: torch.nn.Module
    categories: Categories
    device: torch.device
    precision: str = "fp32"

    @classmethod
    def from_checkpoint(
        cls, path: Path, settings: Mapping[str, Any], device: torch.device
    ) -> Predictor:
        if not path.is_file():
            raise PipelineError(f"{path}: model file not found; train the run first")
        state = torch.load(path, map_location="cpu", weights_only=False)
        categories = Categories.from_list(state["categories"])
        model = build_model(
            state["model_settings"],
            num_classes=len(categories),
            input_settings=state["input_settings"],
        )
        model.load_state_dict(state["model"])
        configure_inference(model, settings["test"])
        channels_last = settings["channels_last"] and device.type == "cuda"
        model = model.to(device).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return cls(model, categories, device, settings["precision"])

    @torch.inference_mode()
    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        batch = [image.to(self.device).float().div_(255) for image in images]
        dtype = AUTOCAST_DTYPES.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            outputs = self.model(batch)
        return [{k: v.float().cpu() for k, v in output.items()} for output in outputs]

    def to_coco(self, image_id: int, output: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
        """COCO results for one image: xywh boxes, RLE masks thresholded at 0.5."""
        boxes = output["boxes"].numpy()
        masks = (output["masks"][:, 0] > 0.5).numpy().astype(np.uint8)
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
        results = []
        for box, score, label, rle in zip(
            boxes, output["scores"].tolist(), output["labels"].tolist(), rles, strict=True
        ):
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": self.categories.category_of(int(label)),
                    "score": round(float(score), 5),
                    "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
                }
            )
        return results


def _collate(items: list[tuple[int, torch.Tensor]]) -> tuple[list[int], list[torch.Tensor]]:
    image_ids, images = zip(*items, strict=True)
    return list(image_ids), list(images)


def batches(
    entries: Sequence[ImageEntry], batch_size: int, workers: int
) -> Iterator[tuple[list[int], list[torch.Tensor]]]:
    loader = DataLoader(
        _Images(entries),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    yield from loader


def predict_entries(
    predictor: Predictor, entries: Sequence[ImageEntry], batch_size: int, workers: int
) -> list[dict[str, Any]]:
    """COCO results of every image in ``entries``."""
    results: list[dict[str, Any]] = []
    for image_ids, images in _progress(batches(entries, batch_size, workers)):
        for image_id, output in zip(image_ids, predictor(images), strict=True):
            results.extend(predictor.to_coco(image_id, output))
    return results


def predict(
    model_path: Path,
    entries: Sequence[ImageEntry],
    settings: Mapping[str, Any],
    out: Path,
    *,
    workers: int = 2,
    index_out: Path | None = None,
) -> list[dict[str, Any]]:
    """Predict every image in ``entries`` and write the COCO results list to ``out``.

    With ``index_out``, also write the :func:`image_index` of the images (for folders
    without an annotation file).
    """
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictor = Predictor.from_checkpoint(model_path, settings, device)
    results = predict_entries(predictor, entries, settings["test"]["ims_per_batch"], workers)
    write_json_atomic(out, results, indent=None)
    if index_out is not None:
        write_json_atomic(index_out, image_index(entries, predictor.categories), indent=None)
    log.info("%d detections on %d images -> %s", len(results), len(entries), out)
    return results


def _progress(iterable: Any) -> Any:
    if os.isatty(2):
        from tqdm import tqdm

        return tqdm(iterable, unit="batch")
    return iterable
