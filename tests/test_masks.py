"""The batched virtual paste against torchvision's paste_masks_in_image, and the RLE built
from its crops against pycocotools' encoding of the full-size masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from maskrcnn_pipeline.inference.masks import encode_full, encode_pasted, paste_masks

HEIGHT, WIDTH = 37, 53


def random_boxes(generator: torch.Generator, count: int) -> torch.Tensor:
    """Boxes of every kind a paste meets: inside, touching and crossing each border (the
    30/28 expansion pushes them further out), under one pixel wide or high, and most of
    the image."""
    centres = torch.rand(count, 2, generator=generator) * torch.tensor([WIDTH + 8.0, HEIGHT + 8])
    centres -= 4
    sizes = torch.rand(count, 2, generator=generator) ** 3 * torch.tensor([WIDTH, HEIGHT]) * 1.2
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    special = torch.tensor(
        [
            [0.0, 0.0, WIDTH, HEIGHT],  # the whole image: touches all four borders
            [0.0, 5.0, 10.0, HEIGHT],  # touching left and bottom
            [WIDTH - 0.4, 3.0, WIDTH, 3.3],  # under one pixel, on the right border
            [-6.0, -4.0, 8.0, 9.0],  # crossing the top-left corner
            [WIDTH - 5.0, HEIGHT - 7.0, WIDTH + 9.0, HEIGHT + 3.0],  # crossing bottom-right
            [12.2, 20.7, 12.5, 20.9],  # under one pixel both ways
            [3.0, 4.0, 3.0, 4.0],  # zero size
        ]
    )
    boxes = torch.cat([boxes, special])
    # a box must overlap the image (torchvision's paste fails on one wholly outside it;
    # detections are clipped to the image before they are pasted)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(-8, WIDTH - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(-8, HEIGHT - 1)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2])
    boxes[:, 2] = boxes[:, 2].clamp(min=0.0)
    boxes[:, 3] = boxes[:, 3].clamp(min=0.0)
    return boxes


def torchvision_masks(masks: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
    pasted = paste_masks_in_image(masks, boxes, (HEIGHT, WIDTH))[:, 0]
    return (pasted > 0.5).numpy().astype(np.uint8)


@pytest.mark.parametrize("chunk_pixels", [1 << 22, 300])
@pytest.mark.parametrize("seed", range(4))
def test_pasted_masks_are_torchvisions(seed: int, chunk_pixels: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    boxes = random_boxes(generator, 60)
    masks = torch.rand(len(boxes), 1, 28, 28, generator=generator)
    pasted = paste_masks(masks, boxes, (HEIGHT, WIDTH), chunk_pixels=chunk_pixels).cpu()
    expected = torchvision_masks(masks, boxes)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(pasted.to_full(), expected)
    assert pasted.pixels.dtype == np.uint8
    assert pasted.pixels.size < expected.size / 4  # crops only, no full-size masks


def test_bf16_probabilities_are_pasted_in_float32() -> None:
    """Under bf16 autocast the masks come as bf16: pasted as the same values in float32
    (torchvision would interpolate in bf16 and round)."""
    generator = torch.Generator().manual_seed(7)
    boxes = random_boxes(generator, 30)
    masks = torch.rand(len(boxes), 1, 28, 28, generator=generator).bfloat16()
    pasted = paste_masks(masks, boxes, (HEIGHT, WIDTH)).cpu()
    np.testing.assert_array_equal(pasted.to_full(), torchvision_masks(masks.float(), boxes))


def test_no_detections_paste_to_nothing() -> None:
    pasted = paste_masks(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (HEIGHT, WIDTH)).cpu()
    assert len(pasted) == 0 and pasted.to_full().shape == (0, HEIGHT, WIDTH)
    assert encode_pasted(pasted) == [] and list(encode_full(pasted.to_full())) == []


@pytest.mark.parametrize("seed", range(3))
def test_rles_from_crops_are_pycocotools_rles_of_the_full_masks(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    boxes = random_boxes(generator, 40)
    masks = torch.rand(len(boxes), 1, 28, 28, generator=generator)
    masks[:3] = 1.0  # solid masks: runs that go on from one column's bottom to the next's top
    masks[3] = 0.0  # an empty mask
    pasted = paste_masks(masks, boxes, (HEIGHT, WIDTH)).cpu()
    ours = encode_pasted(pasted)
    theirs = encode_full(pasted.to_full())
    assert [r["size"] for r in ours] == [r["size"] for r in theirs]
    assert [r["counts"] for r in ours] == [r["counts"] for r in theirs]
