"""Training augmentation: random flips of an image and its boxes and masks.

Each sample's randomness comes from its own seed (drawn by the sampler), not from a global
RNG: the same iteration sees the same flips whether it runs straight through, after a
resume, or in any number of DataLoader workers.
"""

from __future__ import annotations

import torch

from maskrcnn_pipeline.data.coco import Sample, Target


def hflip(image: torch.Tensor, target: Target) -> Sample:
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def vflip(image: torch.Tensor, target: Target) -> Sample:
    height = image.shape[-2]
    boxes = target["boxes"].clone()
    boxes[:, [1, 3]] = height - target["boxes"][:, [3, 1]]
    return image.flip(-2), {**target, "boxes": boxes, "masks": target["masks"].flip(-2)}


class RandomFlips:
    """Flip horizontally with ``horizontal`` probability, vertically with ``vertical``."""

    def __init__(self, horizontal: float, vertical: float) -> None:
        self.horizontal = horizontal
        self.vertical = vertical

    def __call__(self, image: torch.Tensor, target: Target, seed: int) -> Sample:
        draws = torch.rand(2, generator=torch.Generator().manual_seed(seed))
        if draws[0] < self.horizontal:
            image, target = hflip(image, target)
        if draws[1] < self.vertical:
            image, target = vflip(image, target)
        return image, target
