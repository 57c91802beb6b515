"""Images as the user saw them (data/images.py): every mode and bit depth to 8-bit RGB, the
EXIF orientation applied by every decoder (CPU, the GPU path, the dataset), truncation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps
from torch.utils.data import DataLoader, Dataset

from maskrcnn_pipeline.data.coco import CocoInstances, read_image
from maskrcnn_pipeline.data.images import (
    read_rgb,
    truncation,
    upright_size_of_file,
)
from maskrcnn_pipeline.data.transforms import RandomFlips, decode_on_device, upright
from maskrcnn_pipeline.errors import DataError, original_message
from tests.support.images import cut, noise, save_oriented, write_png16

ORIENTATIONS = range(1, 9)


def test_16_bit_grey_is_scaled_to_the_8_bit_range(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535, 1000]], dtype=np.uint16)
    rgb = read_rgb(write_png16(tmp_path / "g16.png", values))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 5, 3)
    # round(v / 257): the full range maps onto 0..255, nothing clipped to white
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255, 4]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()


def test_16_bit_rgb_keeps_its_colours_in_the_8_bit_range(tmp_path: Path) -> None:
    values = np.zeros((2, 3, 3), dtype=np.uint16)
    values[0, 0] = (65535, 0, 0)
    values[0, 1] = (0, 32768, 0)
    values[1, 2] = (257 * 10, 257 * 200, 65535)
    rgb = read_rgb(write_png16(tmp_path / "rgb16.png", values)).astype(int)
    expected = np.rint(values / 257.0).astype(int)
    assert np.abs(rgb - expected).max() <= 1


def test_grey_palette_and_rgba_become_rgb(tmp_path: Path) -> None:
    grey = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8), "L")
    grey.save(tmp_path / "grey.png")
    assert read_rgb(tmp_path / "grey.png")[0].tolist() == [[0] * 3, [100] * 3, [255] * 3]

    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 150, 100] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png", transparency=0)
    assert read_rgb(tmp_path / "palette.png")[0].tolist() == [[10, 20, 30], [200, 150, 100]]

    rgba = np.array([[[200, 10, 20, 0], [1, 2, 3, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    # the colour as stored; the alpha channel is dropped, not blended into the pixels
    assert read_rgb(tmp_path / "rgba.png")[0].tolist() == [[200, 10, 20], [1, 2, 3]]


@pytest.mark.parametrize(("suffix", "tolerance"), [(".tif", 0), (".jpg", 3)])
def test_cmyk_becomes_rgb(tmp_path: Path, suffix: str, tolerance: int) -> None:
    cmyk = Image.new("CMYK", (16, 8), (255, 0, 0, 0))  # cyan
    cmyk.paste((0, 0, 0, 255), (8, 0, 16, 8))  # black
    cmyk.save(tmp_path / f"cmyk{suffix}", **({"quality": 100} if suffix == ".jpg" else {}))
    rgb = read_rgb(tmp_path / f"cmyk{suffix}").astype(int)
    assert np.abs(rgb[4, 2] - [0, 255, 255]).max() <= tolerance
    assert np.abs(rgb[4, 13] - [0, 0, 0]).max() <= tolerance


def test_floating_point_pixels_are_refused_with_the_fix(tmp_path: Path) -> None:
    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(tmp_path / "depth.tif")
    with pytest.raises(DataError, match=r"depth\.tif: .*floating point.*8- or 16-bit"):
        read_rgb(tmp_path / "depth.tif")


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_every_exif_orientation_decodes_as_pillow_shows_it(tmp_path: Path, orientation) -> None:
    upright_image = noise(6, 4, seed=orientation)
    path = save_oriented(upright_image, tmp_path / "photo.png", orientation)
    with Image.open(path) as stored:
        shown = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    assert (shown == np.asarray(upright_image)).all(), "the fixture itself"
    assert (read_rgb(path) == shown).all()
    assert (read_image(path).permute(1, 2, 0).numpy() == shown).all()
    assert upright_size_of_file(path) == (6, 4)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_the_gpu_paths_turn_matches_pillow(tmp_path: Path, orientation: int) -> None:
    """nvjpeg ignores the orientation: decode_on_device turns the stored pixels itself."""
    upright_image = noise(6, 4, seed=orientation)
    path = save_oriented(upright_image, tmp_path / "photo.png", orientation)
    with Image.open(path) as stored:
        pixels = torch.from_numpy(np.array(stored.convert("RGB"))).permute(2, 0, 1)
        shown = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    assert (upright(pixels, orientation).permute(1, 2, 0).numpy() == shown).all()


def test_a_phone_jpeg_is_upright_in_the_training_samples_on_both_decode_paths(
    tmp_path: Path,
) -> None:
    """A phone photo stored sideways (orientation 6 and 8), annotated upright as the tools
    record it: the training targets' masks cover the painted objects."""
    images = tmp_path / "images"
    images.mkdir()
    scene = Image.new("RGB", (96, 64), (40, 40, 40))
    draw = ImageDraw.Draw(scene)
    draw.rectangle((8, 6, 39, 25), fill=(250, 20, 20))  # x 8..39, y 6..25 (upright)
    draw.polygon([(60, 20), (90, 58), (52, 58)], fill=(20, 20, 250))
    shapes = {
        1: ([8, 6, 40, 6, 40, 26, 8, 26], 0),  # red: channel 0
        2: ([60, 20, 90.5, 58.5, 52, 58.5], 2),  # blue: channel 2
    }
    records, annotations = [], []
    for image_id, orientation in ((1, 6), (2, 8)):
        save_oriented(scene, images / f"phone{orientation}.jpg", orientation, quality=95)
        records.append(
            {"id": image_id, "file_name": f"phone{orientation}.jpg", "width": 96, "height": 64}
        )
        for category, (polygon, _) in shapes.items():
            xs, ys = polygon[0::2], polygon[1::2]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    "segmentation": [polygon],
                    "area": 1.0,
                    "iscrowd": 0,
                }
            )
    with Image.open(images / "phone6.jpg") as stored:
        assert stored.size == (64, 96), "stored sideways, as a phone held upright writes it"
    coco = {
        "images": records,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}],
    }
    (tmp_path / "train.json").write_text(json.dumps(coco))

    def painted_iou(image: torch.Tensor, target: dict) -> list[float]:
        ious = []
        for mask, label in zip(target["masks"].bool(), target["labels"].tolist(), strict=True):
            channel = shapes[label][1]
            painted = image[channel].int() - image[1].int() > 120
            ious.append(float((mask & painted).sum() / (mask | painted).sum()))
        return ious

    flips = RandomFlips(horizontal=0.5, vertical=0.5)
    on_cpu = CocoInstances(images, tmp_path / "train.json", train=True, transform=flips)
    encoded = CocoInstances(
        images, tmp_path / "train.json", train=True, transform=flips, decode=False
    )
    for index in range(2):
        for seed in range(4):  # flipped and not: the flips follow the turn
            image, target = on_cpu[index, seed]
            assert min(painted_iou(image, target)) > 0.9
            jpeg, encoded_target = encoded[index, seed]
            assert jpeg.dim() == 1 and "orientation" in encoded_target
            (decoded,) = decode_on_device([jpeg], [encoded_target], torch.device("cpu"))
            assert "orientation" not in encoded_target and "flips" not in encoded_target
            assert min(painted_iou(decoded, encoded_target)) > 0.9
            assert (decoded.int() - image.int()).abs().float().mean() < 2


def test_the_gpu_path_decodes_what_nvjpeg_cannot_on_the_cpu(tmp_path: Path) -> None:
    """A PNG (or CMYK JPEG) comes decoded from the dataset; a batch may mix both kinds."""
    noise(8, 6).save(tmp_path / "a.png")
    save_oriented(noise(8, 6, seed=1), tmp_path / "b.jpg", 6, quality=95)
    Image.new("CMYK", (8, 6), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    records = [
        {"id": i, "file_name": name, "width": 8, "height": 6}
        for i, name in enumerate(["a.png", "b.jpg", "c.jpg"], start=1)
    ]
    box = {"bbox": [1, 1, 4, 4], "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]], "area": 16.0}
    coco = {
        "images": records,
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, **box} for i in (1, 2, 3)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "train.json").write_text(json.dumps(coco))
    dataset = CocoInstances(tmp_path, tmp_path / "train.json", train=True, decode=False)
    images, targets = zip(*(dataset[i] for i in range(3)), strict=True)
    assert [image.dim() for image in images] == [3, 1, 3]
    decoded = decode_on_device(list(images), list(targets), torch.device("cpu"))
    assert all(image.shape == (3, 6, 8) for image in decoded)
    assert (decoded[0] == read_image(tmp_path / "a.png")).all()


def test_a_declared_size_other_than_the_decoded_one_is_a_data_error(tmp_path: Path) -> None:
    save_oriented(noise(10, 6), tmp_path / "p.jpg", 6)
    dataset = one_image_dataset(tmp_path, "p.jpg", 6, 10, decode=True)  # the stored frame
    with pytest.raises(DataError, match=r"p\.jpg: the upright image is 10x6 pixels; .* 6x10"):
        dataset[0]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncation_is_seen_in_the_last_bytes(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"photo{suffix}"
    noise(40, 30).save(path)
    assert truncation(path) is None
    size = path.stat().st_size
    cut(path, size * 3 // 4)
    marker = "end-of-image marker (FF D9)" if suffix == ".jpg" else "IEND chunk"
    assert f"({size * 3 // 4} bytes) does not end with its {marker}" in truncation(path)
    with pytest.raises(DataError, match=rf"photo\{suffix}: cannot decode image \(the file is "):
        read_rgb(path)


def test_a_data_error_from_a_loader_worker_keeps_its_own_message() -> None:
    class Broken(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> None:
            raise DataError("x/photo.jpg: cannot decode image (cut)\nsecond line", path="x")

    with pytest.raises(DataError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1, collate_fn=list)))
    assert "DataLoader worker" in str(caught.value), "torch's wrapping, which is taken off"
    assert original_message(caught.value) == "x/photo.jpg: cannot decode image (cut)\nsecond line"


def one_image_dataset(
    tmp_path: Path, name: str, width: int, height: int, *, decode: bool = False
) -> CocoInstances:
    coco = {
        "images": [{"id": 5, "file_name": name, "width": width, "height": height}],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 1,
                "bbox": [0, 0, 3, 3],
                "segmentation": [[0, 0, 3, 0, 3, 3]],
                "area": 4.5,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "one.json").write_text(json.dumps(coco))
    return CocoInstances(tmp_path, tmp_path / "one.json", train=True, decode=decode)


def test_the_gpu_path_names_a_truncated_file_from_its_worker(tmp_path: Path) -> None:
    noise(40, 30).save(tmp_path / "cut.jpg")
    cut(tmp_path / "cut.jpg", 400)
    with pytest.raises(DataError, match=r"cut\.jpg: cannot decode image \(the file is truncated"):
        one_image_dataset(tmp_path, "cut.jpg", 40, 30)[0]


def test_a_jpeg_the_device_cannot_decode_is_named_by_its_image_id(tmp_path: Path) -> None:
    """Damage the end check cannot see surfaces in the batched decode: the image is found."""
    noise(40, 30).save(tmp_path / "bad.jpg", quality=90)
    raw = bytearray((tmp_path / "bad.jpg").read_bytes())
    start = raw.index(b"\xff\xda")  # start of scan: everything after it is entropy-coded data
    raw[start + 2 : -2] = bytes(len(raw) - start - 4)  # zeros: scan header and data gone
    (tmp_path / "bad.jpg").write_bytes(bytes(raw))
    image, target = one_image_dataset(tmp_path, "bad.jpg", 40, 30)[0]
    assert image.dim() == 1, "sent to the device"
    with pytest.raises(DataError, match=r"training image id 5 cannot be decoded on cpu"):
        decode_on_device([image], [target], torch.device("cpu"))
