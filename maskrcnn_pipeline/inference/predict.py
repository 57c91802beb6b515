"""Run a trained model over images and write COCO results (boxes + RLE masks).

The model is rebuilt from the settings saved inside ``model_final.pth`` and its labels are
mapped back to the dataset's category ids, so the results evaluate against the original
annotation file unchanged. Test-time settings (thresholds, sizes) come from the run's
``test`` settings and can change without retraining.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.transform import resize_boxes

from maskrcnn_pipeline.data.categories import Categories
from maskrcnn_pipeline.data.coco import load_coco, read_image
from maskrcnn_pipeline.data.images import upright_size_of_file
from maskrcnn_pipeline.errors import DataError, PipelineError
from maskrcnn_pipeline.fileio import write_json_atomic
from maskrcnn_pipeline.inference.masks import PastedMasks, encode_full, encode_pasted, paste_masks
from maskrcnn_pipeline.inference.sharding import (
    ONE_PROCESS,
    Shard,
    batch_indices,
    batches_of_shard,
    gather_on_main,
)
from maskrcnn_pipeline.model.build import build_model, configure_inference
from maskrcnn_pipeline.model.precision import autocast, resolve_precision

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: how Predictor pastes masks: its batched paste, or torchvision's (the reference)
PASTE_MODES = ("batched", "torchvision")
#: torchvision's per-image outputs, in Detections' field order
OUTPUT_KEYS = ("boxes", "scores", "labels", "masks")
#: threads encoding results beside the network, and the batches that may wait for them
ENCODE_THREADS = 1
MAX_PENDING = 4


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


def image_index(
    entries: Sequence[ImageEntry], categories: Categories, skipped: Mapping[int, str] = {}
) -> dict[str, Any]:
    """A COCO file without annotations: the predicted images (id, file name, upright size)
    and the model's categories, plus the ``skipped`` images (id -> reason) under
    ``"skipped"``, which COCO tools ignore.

    Written beside the results of a folder without annotations, it is what gives their
    image ids and category ids a meaning: the overlays and any COCO tool read it as the
    ground-truth side. Sizes come from the image headers (no decoding), in the upright frame
    the masks are predicted in.
    """
    images, left_out = [], []
    for entry in entries:
        if entry.image_id in skipped:
            left_out.append(
                {
                    "id": entry.image_id,
                    "file_name": entry.path.name,
                    "reason": skipped[entry.image_id],
                }
            )
            continue
        try:
            width, height = upright_size_of_file(entry.path)
        except OSError as exc:
            raise PipelineError(f"{entry.path}: cannot read image ({exc})") from exc
        images.append(
            {"id": entry.image_id, "file_name": entry.path.name, "width": width, "height": height}
        )
    index: dict[str, Any] = {"images": images, "categories": categories.to_list()}
    if left_out:
        index["skipped"] = left_out
    return index


class _Images(Dataset):
    """(image id, decoded image or the reason it cannot be decoded) when ``skip_unreadable``;
    otherwise an unreadable image raises its DataError."""

    def __init__(self, entries: Sequence[ImageEntry], skip_unreadable: bool) -> None:
        self.entries = entries
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | str]:
        entry = self.entries[index]
        try:
            return entry.image_id, read_image(entry.path)
        except DataError as exc:
            if not self.skip_unreadable:
                raise
            return entry.image_id, str(exc)


@dataclass
class Detections:
    """One image's detections on the CPU: torchvision's boxes (x0, y0, x1, y1 in image
    pixels), scores and labels, and the masks (pasted crops, or the stock path's full-size
    float masks)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: PastedMasks | np.ndarray

    def rles(self) -> Sequence[dict[str, Any]]:
        """COCO RLEs of the masks thresholded at 0.5."""
        if isinstance(self.masks, PastedMasks):
            return encode_pasted(self.masks)
        return encode_full((self.masks[:, 0] > 0.5).astype(np.uint8))


class StageTimes:
    """Seconds spent in each stage of prediction (for bench/predict_speed.py), summed over
    calls. Device stages synchronize the GPU before and after, so that its queued work is
    charged to the stage that queued it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str, *, on_device: bool = True) -> Iterator[None]:
        sync = on_device and self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                torch.cuda.synchronize(self.device)
            elapsed = time.perf_counter() - started
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed


def _untimed(stage: str, *, on_device: bool = True) -> AbstractContextManager[None]:
    return nullcontext()


def run_network(
    model: MaskRCNN, images: list[torch.Tensor]
) -> tuple[list[dict[str, torch.Tensor]], list[tuple[int, int]], list[tuple[int, int]]]:
    """torchvision's MaskRCNN forward in eval mode up to, not including, its postprocess:
    the detections at the network's input size (masks as M x M probabilities), the
    network's image sizes and the original ones (the steps of GeneralizedRCNN.forward)."""
    original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
    inputs, _ = model.transform(images)
    features = model.backbone(inputs.tensors)
    proposals, _ = model.rpn(inputs, features)
    detections, _ = model.roi_heads(features, proposals, inputs.image_sizes)
    return detections, inputs.image_sizes, original_sizes


@dataclass
class Predictor:
    """A model in eval mode, turned into per-image :class:`Detections`.

    ``paste="batched"`` (the default) pastes the masks with :func:`paste_masks`: all at
    once, only inside their boxes, thresholded on the device, moved as bytes.
    ``paste="torchvision"`` is the stock path (the model's own postprocess: one full-size
    float mask per detection, moved as float), kept as the reference that the exactness
    tests and bench/predict_speed.py compare against. Boxes, scores and labels are
    torchvision's in both. ``precision`` may be ``auto`` (resolved here for the device).
    """

    model: torch.nn.Module
    categories: Categories
    device: torch.device
    precision: str = "fp32"
    paste: str = "batched"
    timer: StageTimes | None = None

    def __post_init__(self) -> None:
        if self.paste not in PASTE_MODES:
            raise ValueError(f"paste {self.paste!r}: choose one of {PASTE_MODES}")
        self.precision = resolve_precision(self.precision, self.device)

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
    def __call__(self, images: list[torch.Tensor]) -> list[Detections]:
        stage = self.timer or _untimed
        with stage("model"), autocast(self.precision, self.device):
            batch = [image.to(self.device).float().div_(255) for image in images]
            outputs, sizes, original_sizes = run_network(self.model, batch)
        if self.paste == "torchvision":
            with stage("paste"), autocast(self.precision, self.device):
                outputs = self.model.transform.postprocess(outputs, sizes, original_sizes)
            with stage("transfer"):
                return [
                    Detections(*(output[key].float().cpu().numpy() for key in OUTPUT_KEYS))
                    for output in outputs
                ]
        with stage("paste"):
            pasted = []
            for output, size, original in zip(outputs, sizes, original_sizes, strict=True):
                output["boxes"] = resize_boxes(output["boxes"], size, original)
                pasted.append(paste_masks(output["masks"], output["boxes"], original))
        with stage("transfer"):
            return [
                Detections(
                    *(output[key].float().cpu().numpy() for key in OUTPUT_KEYS[:3]),
                    masks=masks.cpu(),
                )
                for output, masks in zip(outputs, pasted, strict=True)
            ]

    def to_coco(self, image_id: int, detections: Detections) -> list[dict[str, Any]]:
        """COCO results for one image: xywh boxes, RLE masks thresholded at 0.5."""
        results = []
        for box, score, label, rle in zip(
            detections.boxes.tolist(),
            detections.scores.tolist(),
            detections.labels.tolist(),
            detections.rles(),
            strict=True,
        ):
            x0, y0, x1, y1 = box
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

    def encode(
        self, image_ids: Sequence[int], detections: Sequence[Detections]
    ) -> list[dict[str, Any]]:
        """COCO results of one batch, in its order (RLE encoding and JSON building: the part
        :func:`predict_entries` runs beside the network)."""
        stage = self.timer or _untimed
        with stage("encode", on_device=False):
            return [
                result
                for image_id, found in zip(image_ids, detections, strict=True)
                for result in self.to_coco(image_id, found)
            ]


def _collate(items: list[tuple[int, torch.Tensor | str]]) -> list[tuple[int, torch.Tensor | str]]:
    return items


def batches(
    entries: Sequence[ImageEntry],
    batch_size: int,
    workers: int,
    shard: Shard = ONE_PROCESS,
    skipped: dict[int, str] | None = None,
) -> Iterator[tuple[list[int], list[torch.Tensor]]]:
    """The (image ids, images) batches of ``entries`` that ``shard`` predicts. With
    ``skipped`` (a folder of images: one broken photo must not cost the others), an
    unreadable image is left out of its batch, logged and added to ``skipped`` (image id ->
    reason); without, it raises. A batch left empty is still yielded: rank 0 puts the
    ranks' batches back in order by their count (sharding.in_batch_order)."""
    loader = DataLoader(
        _Images(entries, skip_unreadable=skipped is not None),
        batch_sampler=batches_of_shard(batch_indices(len(entries), batch_size), shard),
        num_workers=workers,
        collate_fn=_collate,
    )
    for items in loader:
        kept = [(image_id, image) for image_id, image in items if isinstance(image, torch.Tensor)]
        for image_id, reason in items:
            if isinstance(reason, str):
                log.warning("skipped image %d: %s", image_id, reason)
                assert skipped is not None  # only a skipping dataset returns reasons
                skipped[image_id] = reason
        yield [image_id for image_id, _ in kept], [image for _, image in kept]


def predict_entries(
    predictor: Predictor,
    entries: Sequence[ImageEntry],
    batch_size: int,
    workers: int,
    *,
    shard: Shard = ONE_PROCESS,
    encode_threads: int = ENCODE_THREADS,
    skipped: dict[int, str] | None = None,
) -> list[dict[str, Any]] | None:
    """COCO results of every image in ``entries``, in their order (image-id order); with
    ``skipped``, unreadable images are left out and listed there (:func:`batches`).

    With several processes (``shard``), each predicts its share of the batches and rank 0
    gets everything, the images every rank skipped included (the others get None): a
    collective call that every rank makes.
    """
    loaded = _progress(batches(entries, batch_size, workers, shard, skipped))
    mine = list(encoded_batches(predictor, loaded, encode_threads=encode_threads))
    gathered = gather_on_main(mine, shard)
    if skipped is not None and shard.world_size > 1:
        every_rank = gather_on_main([dict(skipped)], shard)
        for part in every_rank or []:
            skipped.update(part)
    if gathered is None:
        return None
    return [result for batch in gathered for result in batch]


def predict_batches(
    predictor: Predictor,
    loaded: Iterable[tuple[Sequence[int], list[torch.Tensor]]],
    *,
    encode_threads: int = ENCODE_THREADS,
) -> list[dict[str, Any]]:
    """COCO results of (image ids, images) batches, in the batches' order."""
    encoded = encoded_batches(predictor, loaded, encode_threads=encode_threads)
    return [result for batch in encoded for result in batch]


def encoded_batches(
    predictor: Predictor,
    loaded: Iterable[tuple[Sequence[int], list[torch.Tensor]]],
    *,
    encode_threads: int = ENCODE_THREADS,
) -> Iterator[list[dict[str, Any]]]:
    """Each batch's COCO results, in the batches' order.

    The network never waits for encoding: each batch's RLE encoding and JSON building run
    on ``encode_threads`` threads while the next batches are predicted (torch releases the
    GIL while it computes); at most :data:`MAX_PENDING` batches wait to be encoded, which
    bounds the memory they hold. Results come out in submission order, whatever order the
    threads finish in.
    """
    pending: deque[Future[list[dict[str, Any]]]] = deque()
    with ThreadPoolExecutor(encode_threads, thread_name_prefix="encode") as pool:
        for image_ids, images in loaded:
            detections = predictor(images) if images else []  # every image of it skipped
            pending.append(pool.submit(predictor.encode, image_ids, detections))
            while len(pending) > MAX_PENDING:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def predict(
    model_path: Path,
    entries: Sequence[ImageEntry],
    settings: Mapping[str, Any],
    out: Path,
    *,
    workers: int = 2,
    index_out: Path | None = None,
    shard: Shard = ONE_PROCESS,
) -> list[dict[str, Any]] | None:
    """Predict every image in ``entries`` and write the COCO results list to ``out``.

    With ``index_out`` (a folder without an annotation file), also write the
    :func:`image_index` of the images; an unreadable image is then skipped, with its reason
    in the index, and the others are predicted. Without it (an annotated split, which
    validation has checked), an unreadable image stops prediction: its metrics would be
    wrong. With several processes, each predicts its ``shard`` of the batches on its own
    device and rank 0 alone writes (and returns) the merged results.
    """
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictor = Predictor.from_checkpoint(model_path, settings, device)
    skipped: dict[int, str] | None = {} if index_out is not None else None
    batch_size = settings["test"]["ims_per_batch"]
    results = predict_entries(predictor, entries, batch_size, workers, shard=shard, skipped=skipped)
    if results is None:
        return None
    if skipped is not None and len(skipped) == len(entries):
        raise PipelineError(
            f"none of the {len(entries)} images could be read (first: "
            f"{next(iter(skipped.values()))}); check the images folder"
        )
    write_json_atomic(out, results, indent=None)
    if index_out is not None:
        index = image_index(entries, predictor.categories, skipped or {})
        write_json_atomic(index_out, index, indent=None)
    log.info(
        "%d detections on %d images (%d process(es)) -> %s%s",
        len(results),
        len(entries) - len(skipped or {}),
        shard.world_size,
        out,
        f"; {len(skipped)} unreadable image(s) skipped, listed in {index_out}" if skipped else "",
    )
    return results


def _progress(iterable: Any) -> Any:
    if os.isatty(2):
        from tqdm import tqdm

        return tqdm(iterable, unit="batch")
    return iterable
