"""COCO-format instance segmentation data as Mask R-CNN training samples.

Categories are mapped to contiguous labels 1..K in ascending category-id order (0 is the
background), so the number of classes and the mapping always come from the dataset itself;
the mapping travels inside every checkpoint so predictions go back to the dataset's ids.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO

from maskrcnn_pipeline.data.categories import Categories
from maskrcnn_pipeline.data.formats import is_box_only
from maskrcnn_pipeline.data.images import (
    decode_rgb,
    read_file_bytes,
    read_header,
    read_rgb,
    truncation_of_bytes,
)
from maskrcnn_pipeline.errors import DataError, PipelineError

log = logging.getLogger(__name__)

Target = dict[str, torch.Tensor]
Sample = tuple[torch.Tensor, Target]


def load_coco(annotations: str | Path) -> COCO:
    """Load an annotation file with pycocotools, naming the file on any failure."""
    path = Path(annotations)
    if not path.is_file():
        raise PipelineError(f"{path}: annotation file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: not a COCO-format annotation file ({exc})") from exc


def rgb_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] pixels as the [3, H, W] tensor the model takes (one copy)."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def read_image(path: Path) -> torch.Tensor:
    """Decode an image file to an upright uint8 RGB tensor [3, H, W] (data/images.py: EXIF
    orientation applied, any mode and bit depth to 8-bit RGB); a DataError names the file."""
    return rgb_tensor(read_rgb(path))


def load_for_device(path: Path) -> tuple[torch.Tensor, int | None, tuple[int, int]]:
    """For GPU decoding: (image, orientation, upright (height, width)).

    A JPEG that nvjpeg can decode stays encoded (a 1-D byte tensor) with its EXIF
    orientation, which the GPU decoder ignores and :func:`~maskrcnn_pipeline.data.transforms.
    decode_on_device` applies after decoding; any other image (PNG, CMYK, 16-bit) is decoded
    here, upright, with no orientation left to apply (None). So is a JPEG whose end looks cut
    (its bytes are at hand): decoding it here names the file if it is truncated.
    """
    data = read_file_bytes(path)
    header = read_header(data, path)
    width, height = header.upright_size
    if header.device_decodable and truncation_of_bytes(data) is None:
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return encoded, header.orientation, (height, width)
    image = rgb_tensor(decode_rgb(data, path))
    return image, None, (image.shape[-2], image.shape[-1])


def _usable(annotation: Mapping[str, Any]) -> bool:
    """Crowd regions and degenerate boxes are not training targets (as in Detectron)."""
    _, _, width, height = annotation["bbox"]
    return not annotation.get("iscrowd", 0) and width >= 1 and height >= 1


class CocoInstances(torch.utils.data.Dataset):
    """(uint8 image [3,H,W], target) pairs in the format torchvision's Mask R-CNN trains on.

    In training mode, images without a usable annotation are left out, as NVIDIA's and
    torchvision's references do. ``transform`` runs on every sample (flips); with
    ``cache=True`` decoded samples are kept in memory, which makes small datasets (the demo)
    as fast as preloaded tensors.
    """

    def __init__(
        self,
        images: str | Path,
        annotations: str | Path,
        *,
        train: bool,
        transform: Callable[[torch.Tensor, Target, int], Sample] | None = None,
        cache: bool = False,
        decode: bool = True,
    ) -> None:
        self.images_dir = Path(images)
        self.coco = load_coco(annotations)
        self.categories = Categories.from_records(self.coco.loadCats(self.coco.getCatIds()))
        if not len(self.categories):
            raise PipelineError(f"{annotations}: no categories; a dataset needs at least one")
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if any(map(_usable, self._annotations(i)))]
            if not ids:
                raise PipelineError(f"{annotations}: no image has a usable annotation")
        self.image_ids = ids
        self.transform = transform
        self.decode = decode
        self._cache: dict[int, Sample] | None = {} if cache else None

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        return self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_info(self, index: int) -> dict[str, Any]:
        return self.coco.imgs[self.image_ids[index]]

    def aspect_ratios(self) -> list[float]:
        """Width / height of every image, from the annotations (no image is opened)."""
        return [
            self.image_info(i)["width"] / self.image_info(i)["height"] for i in range(len(self))
        ]

    def load(self, index: int) -> Sample:
        info = self.image_info(index)
        path = self.images_dir / info["file_name"]
        annotations = [a for a in self._annotations(info["id"]) if _usable(a)]
        target = self._target(info, annotations)
        if self.decode:
            image = read_image(path)
            size = image.shape[-2:]
        else:
            image, orientation, size = load_for_device(path)
            if orientation is not None:
                target["orientation"] = torch.tensor(orientation)
        _check_size(size, info, path)
        return image, target

    def _target(self, info: Mapping[str, Any], annotations: list[dict[str, Any]]) -> Target:
        height, width = info["height"], info["width"]
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(0, width)
        boxes[:, 1::2].clamp_(0, height)
        masks = np.zeros((len(annotations), height, width), dtype=np.uint8)
        # a box-only object (segmentation []: data/prepare.py, box_only: skip_mask) trains the
        # box head only: model/build.py's mask loss leaves out proposals matched to it
        has_mask = [not is_box_only(a) for a in annotations]
        for i, annotation in enumerate(annotations):
            if has_mask[i]:
                masks[i] = self.coco.annToMask(annotation)
        labels = [self.categories.label_of(a["category_id"]) for a in annotations]
        return {
            "boxes": boxes,
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "has_mask": torch.tensor(has_mask, dtype=torch.bool),
            "image_id": torch.tensor(info["id"]),
        }

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """``dataset[index]``, or ``dataset[index, seed]`` to seed the sample's transform."""
        index, seed = key if isinstance(key, tuple) else (key, key)
        if self._cache is None:
            sample = self.load(index)
        else:
            if index not in self._cache:
                self._cache[index] = self.load(index)
            image, target = self._cache[index]
            sample = image, dict(target)
        return self.transform(*sample, seed) if self.transform else sample


def _check_size(decoded: Sequence[int], info: Mapping[str, Any], path: Path) -> None:
    """The masks are drawn at the declared size: pixels of another size would not match."""
    if tuple(decoded) != (info["height"], info["width"]):
        raise DataError(
            f"{path}: the upright image is {decoded[1]}x{decoded[0]} pixels; the annotations "
            f"say {info['width']}x{info['height']}; validate the dataset (validation.json "
            "explains the mismatch)",
            path=path,
        )


def collate(batch: Sequence[Sample]) -> tuple[list[torch.Tensor], list[Target]]:
    """Detection batches are lists: images differ in size until the model batches them."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
