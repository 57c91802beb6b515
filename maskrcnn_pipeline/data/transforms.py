"""Training augmentation: random flips of an image and its boxes and masks.

Each sample's randomness comes from its own seed (drawn by the sampler), not from a global
RNG: the same iteration sees the same flips whether it runs straight through, after a
resume, or in any number of DataLoader workers.

With GPU decoding the image is still encoded JPEG bytes when the sample is built: its boxes
and masks are flipped here and the flips are recorded in ``target["flips"]``, to be applied
to the image once it is decoded on the GPU (:func:`decode_on_device`). The boxes and masks
are in the upright frame (the annotations'); nvjpeg decodes the stored pixels and ignores
the EXIF orientation, so the decoded image is first turned upright (``target["orientation"]``,
data/images.py's UPRIGHT_STEPS), then flipped. Images nvjpeg cannot decode (PNG, CMYK) come
decoded from the dataset and are flipped there, so a batch may mix both.
"""

from __future__ import annotations

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from maskrcnn_pipeline.data.coco import Sample, Target
from maskrcnn_pipeline.data.images import UPRIGHT_STEPS
from maskrcnn_pipeline.errors import DataError


def _flip_target(target: Target, horizontal: bool) -> Target:
    height, width = target["masks"].shape[-2:]
    boxes = target["boxes"].clone()
    if horizontal:
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    else:
        boxes[:, [1, 3]] = height - target["boxes"][:, [3, 1]]
    masks = target["masks"].flip(-1 if horizontal else -2)
    return {**target, "boxes": boxes, "masks": masks}


def is_encoded(image: torch.Tensor) -> bool:
    """Encoded images are 1-D byte tensors; decoded ones are [3, H, W]."""
    return image.dim() == 1


def flip_image(image: torch.Tensor, horizontal: bool, vertical: bool) -> torch.Tensor:
    if horizontal:
        image = image.flip(-1)
    if vertical:
        image = image.flip(-2)
    return image


class RandomFlips:
    """Flip horizontally with ``horizontal`` probability, vertically with ``vertical``."""

    def __init__(self, horizontal: float, vertical: float) -> None:
        self.horizontal = horizontal
        self.vertical = vertical

    def __call__(self, image: torch.Tensor, target: Target, seed: int) -> Sample:
        draws = torch.rand(2, generator=torch.Generator().manual_seed(seed))
        flips = (bool(draws[0] < self.horizontal), bool(draws[1] < self.vertical))
        for horizontal, flip in zip((True, False), flips, strict=True):
            if flip:
                target = _flip_target(target, horizontal)
        if is_encoded(image):
            return image, {**target, "flips": torch.tensor(flips)}
        return flip_image(image, *flips), target


def upright(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Stored pixels [..., H, W] turned upright for an EXIF ``orientation`` (1-8)."""
    transpose, flip_rows, flip_columns = UPRIGHT_STEPS[orientation]
    if transpose:
        image = image.transpose(-2, -1)
    return flip_image(image, horizontal=flip_columns, vertical=flip_rows)


def _decode_jpegs(images: list[torch.Tensor], targets: list[Target], device: torch.device):
    """One batched decode; when it fails, one by one, to name the image that cannot be."""
    try:
        return decode_jpeg(images, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        for image, target in zip(images, targets, strict=True):
            try:
                decode_jpeg(image, mode=ImageReadMode.RGB, device=device)
            except RuntimeError as exc:
                raise DataError(
                    f"training image id {int(target['image_id'])} cannot be decoded on "
                    f"{device} ({exc}); validate the dataset with decode_images: true to find "
                    "what is wrong with its file"
                ) from exc
        raise


def decode_on_device(
    images: list[torch.Tensor], targets: list[Target], device: torch.device
) -> list[torch.Tensor]:
    """Decode the encoded JPEGs of a batch on ``device`` (one batched call on CUDA), turn
    them upright and apply the flips recorded in the targets (the targets lose their
    ``flips`` and ``orientation`` entries); images already decoded pass unchanged."""
    encoded = [i for i, image in enumerate(images) if is_encoded(image)]
    decoded = list(images)
    if encoded:
        batch = _decode_jpegs([images[i] for i in encoded], [targets[i] for i in encoded], device)
        for i, image in zip(encoded, batch, strict=True):
            target = targets[i]
            orientation = int(target.pop("orientation", torch.tensor(1)))
            flips = target.pop("flips", torch.zeros(2, dtype=torch.bool))
            decoded[i] = flip_image(upright(image, orientation), *map(bool, flips))
    return decoded
