"""Masks pasted into the image in one batched operation, and encoded to RLE from the crops.

torchvision's ``paste_masks_in_image`` runs a Python loop over the detections, allocating one
full H x W float mask for each (about 120 MB for 100 detections at 640x480), which the caller
then copies to the CPU and thresholds there. Here every detection's mask is computed only
inside its box (the part of the box inside the image: MLPerf's "virtual paste"), for all
detections at once, thresholded on the device and moved to the CPU as bytes; the full-image
RLE is then built from each crop and its offset, so no full-size mask ever exists.

Semantics: those of torchvision's paste, pixel for pixel. The 28x28 mask is padded by one
pixel, the box is scaled by 30/28 around its centre and truncated to integers with
torchvision's own ``expand_boxes``, the padded mask is resized to the integer box
(``w = x1 - x0 + 1``, at least 1) with bilinear ``align_corners=False`` sampling (the same
source coordinates, clamping and weights as ``F.interpolate``) and clipped to the image.
The values are computed in float32, in the order of torchvision's CPU kernel, so for
float32 probabilities the thresholded masks are identical to torchvision's on random boxes
(tests/test_masks.py: inside, touching and crossing the image border, under one pixel); in
principle a value within a few ulp of the threshold could round the other way (a GPU kernel
may fuse multiply-adds). Under bf16/fp16 autocast the probabilities come in that dtype:
torchvision interpolates them in it and rounds the result, the batched paste interpolates
the same values in float32, so some edge pixels differ (bbox results are untouched; on the
demo model segm AP moved by 0.0011, every segm stat by at most 0.0019; the exactness
tests allow 0.002).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pycocotools.mask as mask_util
import torch
from torchvision.models.detection.roi_heads import expand_boxes

#: torchvision pads the predicted mask by this many pixels before resizing it
PADDING = 1
#: default bound on the pixels computed at once (float32 intermediates: ~16 bytes a pixel)
CHUNK_PIXELS = 1 << 22


class DeviceMasks(NamedTuple):
    """:class:`PastedMasks` still on the device (torch tensors): what the paste computes
    there, before the one transfer of bytes."""

    pixels: torch.Tensor
    starts: torch.Tensor
    tops: torch.Tensor
    lefts: torch.Tensor
    heights: torch.Tensor
    widths: torch.Tensor
    image_size: tuple[int, int]

    def cpu(self) -> PastedMasks:
        """On the CPU, as numpy arrays (uint8 pixels: one byte a pixel of the crops)."""
        arrays = (tensor.cpu().numpy() for tensor in self[:-1])
        return PastedMasks(*arrays, image_size=self.image_size)


@dataclass(frozen=True)
class PastedMasks:
    """The thresholded masks of one image, each stored only inside its clipped box.

    ``pixels`` holds every crop one after the other, each in column-major order (the order
    of COCO's RLE); crop ``i`` is ``heights[i] x widths[i]`` at row ``tops[i]``, column
    ``lefts[i]`` of the ``image_size`` image, and starts at ``starts[i]`` in ``pixels``.
    """

    pixels: np.ndarray  # uint8 0/1, all crops concatenated
    starts: np.ndarray
    tops: np.ndarray
    lefts: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.starts)

    def crop(self, index: int) -> np.ndarray:
        """Crop ``index`` as a (height, width) array (a view of ``pixels``)."""
        start, height, width = (int(v[index]) for v in (self.starts, self.heights, self.widths))
        return self.pixels[start : start + height * width].reshape(width, height).T

    def to_full(self) -> np.ndarray:
        """Full-size N x H x W uint8 masks (for tests and drawing; predict never needs them)."""
        full = np.zeros((len(self), *self.image_size), dtype=np.uint8)
        for i in range(len(self)):
            top, left = int(self.tops[i]), int(self.lefts[i])
            crop = self.crop(i)
            full[i, top : top + crop.shape[0], left : left + crop.shape[1]] = crop
        return full


def _integer_boxes(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The boxes torchvision pastes the padded masks into (int64 x0, y0, x1, y1)."""
    size = masks.shape[-1]
    scale = float(size + 2 * PADDING) / size
    return expand_boxes(boxes, scale).to(dtype=torch.int64)


def _source_index(
    output: torch.Tensor, output_size: torch.Tensor, input_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Low index, high index and weight of the high one for bilinear sampling with
    ``align_corners=False`` (PyTorch's area_pixel_compute_source_index, clamped at 0)."""
    scale = input_size / output_size.to(torch.float32)
    real = ((output.to(torch.float32) + 0.5) * scale - 0.5).clamp_(min=0)
    low = real.to(torch.int64).clamp_(max=input_size - 1)
    weight = (real - low).clamp_(0, 1)
    high = (low + 1).clamp_(max=input_size - 1)
    return low, high, weight


def _plan_chunks(sizes: list[list[int]], budget: int) -> list[tuple[int, int, int, int]]:
    """(first, last, rows, cols) of each chunk of the size-sorted crops: consecutive crops
    whose common padded size (rows x cols, the largest of each) times their number stays
    within ``budget`` pixels."""
    plan, first = [], 0
    while first < len(sizes):
        (rows, cols), last = sizes[first], first + 1
        while last < len(sizes):
            grown = max(rows, sizes[last][0]), max(cols, sizes[last][1])
            if (last + 1 - first) * grown[0] * grown[1] > budget:
                break
            (rows, cols), last = grown, last + 1
        plan.append((first, last, rows, cols))
        first = last
    return plan


def paste_masks(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    image_size: tuple[int, int],
    *,
    threshold: float = 0.5,
    chunk_pixels: int = CHUNK_PIXELS,
) -> DeviceMasks:
    """Paste N x 1 x M x M mask probabilities into their ``boxes`` (image coordinates) of an
    ``image_size`` (H, W) image and threshold them at ``threshold``, on the masks' device
    (``.cpu()`` of the result brings the crops to the CPU as bytes).

    Separable bilinear sampling, batched: each chunk of detections (similar sizes, at most
    ``chunk_pixels`` padded crop pixels; a larger detection is a chunk on its own) first
    samples the mask's columns for every crop column, then the rows for every crop pixel.
    """
    height, width = image_size
    device = masks.device
    padded = torch.nn.functional.pad(masks[:, 0].to(torch.float32), (PADDING,) * 4)
    source = padded.shape[-1]
    x0, y0, x1, y1 = _integer_boxes(masks, boxes).unbind(1)
    box_w, box_h = (x1 - x0 + 1).clamp(min=1), (y1 - y0 + 1).clamp(min=1)
    top, left = y0.clamp(min=0, max=height), x0.clamp(min=0, max=width)
    crop_h = ((y1 + 1).clamp(max=height) - top).clamp(min=0)
    crop_w = ((x1 + 1).clamp(max=width) - left).clamp(min=0)
    order = torch.argsort(crop_h * crop_w, stable=True)
    sizes = torch.stack([crop_h[order], crop_w[order]], 1).tolist()  # the one host sync
    columns = padded.transpose(1, 2)  # [detection, source column, source row]
    chunks: list[torch.Tensor] = []
    for first, last, rows, cols in _plan_chunks(sizes, chunk_pixels):
        chunk = order[first:last]
        count = last - first
        col_index = torch.arange(cols, device=device)
        row_index = torch.arange(rows, device=device)
        # 1. every crop column sampled along x: [detection, crop column, source row]
        x_low, x_high, x_weight = _source_index(
            left[chunk, None] + col_index - x0[chunk, None], box_w[chunk, None], source
        )
        shape = (count, cols, source)
        picked = columns[chunk]
        low = torch.gather(picked, 1, x_low[:, :, None].expand(shape))
        high = torch.gather(picked, 1, x_high[:, :, None].expand(shape))
        along_x = low * (1 - x_weight)[:, :, None] + high * x_weight[:, :, None]
        # 2. every crop pixel sampled along y: [detection, crop column, crop row]
        y_low, y_high, y_weight = _source_index(
            top[chunk, None] + row_index - y0[chunk, None], box_h[chunk, None], source
        )
        shape = (count, cols, rows)
        values = (
            torch.gather(along_x, 2, y_low[:, None, :].expand(shape)) * (1 - y_weight)[:, None, :]
            + torch.gather(along_x, 2, y_high[:, None, :].expand(shape)) * y_weight[:, None, :]
        )
        inside = (col_index[None, :, None] < crop_w[chunk, None, None]) & (
            row_index[None, None, :] < crop_h[chunk, None, None]
        )
        chunks.append((values > threshold)[inside].to(torch.uint8))  # column-major crops
    pixels = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.uint8, device=device)
    areas = crop_h * crop_w
    starts = torch.empty_like(areas)
    starts[order] = torch.cumsum(areas[order], 0) - areas[order]
    return DeviceMasks(pixels, starts, top, left, crop_h, crop_w, (int(height), int(width)))


def _run_bounds(pasted: PastedMasks, index: int) -> np.ndarray:
    """Start and end (exclusive) of each run of ones of mask ``index``, as column-major
    indices into the full image, interleaved: [s0, e0, s1, e1, ...]."""
    height = pasted.image_size[0]
    crop_h, crop_w = int(pasted.heights[index]), int(pasted.widths[index])
    if crop_h == 0 or crop_w == 0:
        return np.zeros(0, dtype=np.int64)
    start = int(pasted.starts[index])
    columns = pasted.pixels[start : start + crop_h * crop_w].reshape(crop_w, crop_h)
    padded = np.zeros((crop_w, crop_h + 2), dtype=np.int8)
    padded[:, 1:-1] = columns
    flat = padded.reshape(-1)
    changes = np.flatnonzero(np.diff(flat)) + 1  # first index of each new run
    column, row = np.divmod(changes, crop_h + 2)
    bounds = (pasted.lefts[index] + column) * height + pasted.tops[index] + row - 1
    # a run reaching the bottom of a column goes on at the top of the next one when the crop
    # spans the image's full height: drop the end/start pairs that meet
    ends, starts = bounds[1:-1:2], bounds[2::2]
    joined = np.flatnonzero(ends == starts)
    if len(joined):
        bounds = np.delete(bounds, np.concatenate([2 * joined + 1, 2 * joined + 2]))
    return bounds


def encode_pasted(pasted: PastedMasks) -> list[dict[str, Any]]:
    """COCO compressed RLEs of every mask (the same bytes pycocotools' ``encode`` gives the
    full-size masks), built from the crops."""
    height, width = pasted.image_size
    uncompressed = []
    for index in range(len(pasted)):
        bounds = _run_bounds(pasted, index)
        counts = np.diff(np.concatenate([[0], bounds, [height * width]]))
        if len(counts) > 1 and counts[-1] == 0:  # ends on a one: no empty last run
            counts = counts[:-1]
        uncompressed.append({"counts": counts.astype(np.uint32), "size": [height, width]})
    if not uncompressed:
        return []
    return mask_util.frPyObjects(uncompressed, height, width)


def encode_full(masks: np.ndarray) -> Sequence[dict[str, Any]]:
    """COCO compressed RLEs of N x H x W 0/1 masks (the stock path's encoding)."""
    if not len(masks):
        return []
    return mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
