"""The dataset validator: a crafted bad dataset for every kind of problem, and the report."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from maskrcnn_pipeline.data.dataset_record import dataset_record, write_dataset_record
from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset
from maskrcnn_pipeline.data.validation import (
    ERRORS,
    WARNINGS,
    Split,
    ValidationSettings,
    errors_path,
    validate_dataset,
    write_report,
)
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.workflow.code_inputs import module_inputs
from tests.support.images import cut, noise, save_oriented
from tests.support.paths import REPO
from tests.support.workflow import run_script

SQUARE = [1.0, 1.0, 11.0, 1.0, 11.0, 11.0, 1.0, 11.0]
GOOD: dict[str, Any] = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
        {"id": 3, "file_name": "c.png", "width": 20, "height": 20},
    ],
    "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}],
    "annotations": [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [1, 1, 10, 10],
            "segmentation": [SQUARE],
            "area": 100.0,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 2,
            "category_id": 3,
            "bbox": [5, 5, 20, 10],
            "segmentation": {"size": [30, 40], "counts": [100, 50, 1050]},
            "area": 50,
            "iscrowd": 1,
        },
        {
            "id": 3,
            "image_id": 3,
            "category_id": 1,
            "bbox": [0, 0, 20, 20],
            "segmentation": [[0, 0, 20, 0, 20, 20]],
            "area": 200,
            "iscrowd": 0,
        },
    ],
}


def write_dataset(root: Path, data: dict[str, Any] | str) -> Split:
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for image in GOOD["images"]:
        Image.new("RGB", (image["width"], image["height"]), "gray").save(
            images / image["file_name"]
        )
    annotations = root / "annotations.json"
    annotations.write_text(data if isinstance(data, str) else json.dumps(data))
    return Split("train", images, annotations)


def check(tmp_path: Path, edit: Callable[[dict[str, Any]], Any] | None = None, **settings):
    data = copy.deepcopy(GOOD)
    if edit:
        edit(data)
    split = write_dataset(tmp_path, data)
    return validate_dataset("d", [split], ValidationSettings(**settings))


def test_good_dataset_is_valid_with_the_category_mapping(tmp_path: Path) -> None:
    report = check(tmp_path)
    assert report["valid"] and (report["error_count"], report["warning_count"]) == (0, 0)
    assert report["categories"] == [
        {"id": 1, "name": "cat", "label": 1},
        {"id": 3, "name": "dog", "label": 2},
    ]
    assert (report["num_categories"], report["num_classes"]) == (2, 3)
    split = report["splits"]["train"]
    assert split["counts"] == {
        "images": 3,
        "annotations": 3,
        "crowd_annotations": 1,
        "box_only_annotations": 0,
        "categories": 2,
    }
    assert len(split["annotations_sha256"]) == 64


def ann(index: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["annotations"][index].update(changes)


def image(index: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["images"][index].update(changes)


ERROR_CASES = [
    # (id, edit, kind, message, example ids)
    ("missing-key", lambda d: d["annotations"][0].pop("area"), "missing_key",
     "annotation 1 has no 'area'", {"annotation_id": 1, "image_id": 1}),
    ("missing-image-key", lambda d: d["images"][2].pop("height"), "missing_key",
     "image 3 has no 'height'", {"image_id": 3, "file": "c.png"}),
    ("wrong-type-bbox", ann(0, bbox=[1, 2, 3]), "wrong_type",
     "annotation 1: bbox must be 4 numbers [x, y, width, height], got [1, 2, 3]",
     {"annotation_id": 1}),
    ("wrong-type-id", ann(2, category_id="1"), "wrong_type",
     "annotation 3: category_id must be an integer, got '1'", {"annotation_id": 3}),
    ("wrong-type-polygon", ann(0, segmentation=[[1, 2, "x", 4, 5, 6]]), "wrong_type",
     "polygon 0 is not a list of numbers", {"annotation_id": 1}),
    ("duplicate-annotation-id", ann(1, id=1), "duplicate_id",
     "annotation id 1 is used more than once", {"annotation_id": 1, "image_id": 2}),
    ("duplicate-category-id", lambda d: d["categories"].append({"id": 1, "name": "cow"}),
     "duplicate_id", "category id 1 is used more than once", {}),
    ("unknown-image", ann(0, image_id=99), "unknown_image", "image_id 99 is not an image",
     {"annotation_id": 1, "image_id": 99}),
    ("unknown-category", ann(0, category_id=7), "unknown_category",
     "category_id 7 is not a category", {"annotation_id": 1, "file": "a.png"}),
    ("bbox-zero-width", ann(0, bbox=[1, 1, 0, 5]), "bbox_not_positive",
     "bbox [1, 1, 0, 5] has width 0 and height 5", {"annotation_id": 1}),
    ("bbox-outside", ann(0, bbox=[35, 1, 10, 10]), "bbox_outside_image",
     "bbox [35, 1, 10, 10] spans x 35..45, y 1..11: outside the 40x30 image (tolerance 1 px)",
     {"annotation_id": 1, "image_id": 1, "file": "a.png"}),
    ("bbox-negative", ann(0, bbox=[-3, 0, 5, 5]), "bbox_outside_image",
     "spans x -3..2", {"annotation_id": 1}),
    ("empty-polygons", ann(0, segmentation=[]), "segmentation_empty",
     "segmentation is [] (a box-only object", {"annotation_id": 1}),
    ("odd-polygon", ann(0, segmentation=[SQUARE, [1, 1, 5, 5, 9, 9, 3]]),
     "polygon_odd_coordinates", "polygon 1 has 7 coordinates, an odd number",
     {"annotation_id": 1}),
    ("short-polygon", ann(0, segmentation=[[1, 1, 5, 5]]), "polygon_too_short",
     "polygon 0 has 2 point(s); at least 3 are needed", {"annotation_id": 1}),
    ("rle-size", ann(1, segmentation={"size": [20, 40], "counts": [800]}), "rle_size_mismatch",
     "RLE size [20, 40] is not the image's [height, width] [30, 40]", {"annotation_id": 2}),
    ("rle-counts", ann(1, segmentation={"size": [30, 40], "counts": [10, 20]}), "rle_invalid",
     "RLE counts cover 30 pixels, not 30x40", {"annotation_id": 2}),
    ("rle-no-size", ann(1, segmentation={"counts": "abc"}), "rle_invalid",
     "RLE size None is not [height, width]", {"annotation_id": 2}),
    ("iscrowd", ann(0, iscrowd=2), "iscrowd_invalid", "iscrowd is 2, not 0 or 1",
     {"annotation_id": 1}),
    ("size-mismatch", image(0, width=41), "image_size_mismatch",
     "a.png is 40x30 pixels; the annotations say 41x30", {"image_id": 1, "file": "a.png"}),
    ("outside-folder", image(1, file_name="../b.png"), "file_name_outside_folder",
     "file_name '../b.png' must stay inside", {"image_id": 2, "file": "../b.png"}),
    ("missing-file", image(1, file_name="gone.png"), "image_missing", "gone.png does not exist",
     {"image_id": 2, "file": "gone.png"}),
    ("no-images", lambda d: d.update(images=[], annotations=[]), "empty",
     "the file has no images", {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "kind", "message", "ids"),
    [pytest.param(*case[1:], id=case[0]) for case in ERROR_CASES],
)
def test_every_kind_of_error_is_reported_with_its_example(
    tmp_path: Path, edit, kind: str, message: str, ids: dict[str, Any]
) -> None:
    report = check(tmp_path, edit)
    errors = report["splits"]["train"]["errors"]
    assert not report["valid"]
    assert list(errors) == [kind], errors  # one problem, reported once
    example = errors[kind]["examples"][0]
    assert message in example["message"]
    assert ids.items() <= example.items()


def test_unreadable_image(tmp_path: Path) -> None:
    split = write_dataset(tmp_path, json.dumps(GOOD))
    (split.images / "c.png").write_bytes(b"\x89PNG truncated")
    report = validate_dataset("d", [split])
    example = report["splits"]["train"]["errors"]["image_unreadable"]["examples"][0]
    assert example["image_id"] == 3 and "c.png cannot be read as an image" in example["message"]


def with_image(tmp_path: Path, name: str, save: Callable[[Path], Any], **size: int) -> Split:
    """The GOOD dataset whose first image is the file ``save`` writes (declared ``size``)."""
    split = write_dataset(tmp_path, json.dumps(GOOD))
    save(split.images / name)
    data = copy.deepcopy(GOOD)
    data["images"][0].update(file_name=name, **size)
    split.annotations.write_text(json.dumps(data))
    return split


def errors_of(split: Split, **settings: Any) -> dict[str, Any]:
    return validate_dataset("d", [split], ValidationSettings(**settings))["splits"]["train"][
        "errors"
    ]


@pytest.mark.parametrize("name", ["a.jpg", "a.png"])
@pytest.mark.parametrize("kept", [0.5, 0.05])  # the header is gone too at 5%
def test_a_truncated_jpeg_or_png_is_caught_from_its_last_bytes(
    tmp_path: Path, name: str, kept: float
) -> None:
    split = with_image(tmp_path, name, lambda path: noise(40, 30).save(path))
    size = (split.images / name).stat().st_size
    cut(split.images / name, int(size * kept))
    errors = errors_of(split)
    assert list(errors) == ["image_truncated"], "without decode_images"
    (example,) = errors["image_truncated"]["examples"]
    assert example["file"] == name and str(split.images / name) in example["message"]
    assert "cut short" in example["message"] and "copy it again" in example["message"]


def test_data_after_a_jpegs_end_is_not_truncation(tmp_path: Path) -> None:
    """A phone's motion photo appends its video after the JPEG's end-of-image marker."""

    def motion_photo(path: Path) -> None:
        noise(40, 30).save(path, quality=90)
        path.write_bytes(path.read_bytes() + b"\x00\x00\x00\x18ftypmp42" + bytes(500))

    assert errors_of(with_image(tmp_path, "a.jpg", motion_photo)) == {}


def test_damage_inside_a_file_is_caught_by_decoding_it(tmp_path: Path) -> None:
    def damaged(path: Path) -> None:
        noise(40, 30).save(path)
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # inside IDAT: the end is intact, the CRC is not
        path.write_bytes(bytes(raw))

    split = with_image(tmp_path, "a.png", damaged)
    assert errors_of(split) == {}, "the header and the end are fine"
    (example,) = errors_of(split, decode_images=True)["image_unreadable"]["examples"]
    assert "a.png: cannot decode image" in example["message"]


def test_pixels_without_a_fixed_range_are_refused_from_the_header(tmp_path: Path) -> None:
    def depth(path: Path) -> None:
        Image.fromarray(np.ones((30, 40), dtype=np.float32)).save(path)

    errors = errors_of(with_image(tmp_path, "a.tif", depth))
    assert "floating point" in errors["image_mode_unsupported"]["examples"][0]["message"]


def phone_photo(path: Path) -> None:
    """40 wide, 30 high upright; stored 30x40 with EXIF orientation 6."""
    save_oriented(noise(40, 30), path, 6, quality=90)


def test_sizes_are_compared_in_the_upright_frame(tmp_path: Path) -> None:
    assert errors_of(with_image(tmp_path, "a.jpg", phone_photo, width=40, height=30)) == {}


def test_a_size_of_the_stored_frame_is_named_as_such(tmp_path: Path) -> None:
    split = with_image(tmp_path, "a.jpg", phone_photo, width=30, height=40)
    errors = errors_of(split)
    assert list(errors) == ["image_size_stored_frame"]
    message = errors["image_size_stored_frame"]["examples"][0]["message"]
    assert "stores 30x40 pixels with EXIF orientation 6, so it is 40x30 upright" in message
    assert "the annotations say 30x40, the size of the stored, sideways pixels" in message
    assert "swap" not in message and "Orientation=1" in message


def test_another_size_says_both_frames_and_suggests_no_swap(tmp_path: Path) -> None:
    split = with_image(tmp_path, "a.jpg", phone_photo, width=20, height=30)
    message = errors_of(split)["image_size_mismatch"]["examples"][0]["message"]
    assert "stores 30x40 pixels with EXIF orientation 6, so it is 40x30 upright" in message
    assert message.endswith("the annotations say 20x30") and "swap" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "the top level is not a JSON object"),
        ('{"images": [], "annotations": []}', "the file has no 'categories' list"),
        ('{"images": {}, "annotations": [], "categories": []}', "has a non-list 'images' list"),
    ],
)
def test_not_a_coco_file(tmp_path: Path, text: str, message: str) -> None:
    report = validate_dataset("d", [write_dataset(tmp_path, text)])
    assert message in report["splits"]["train"]["errors"]["not_coco"]["examples"][0]["message"]


def test_missing_annotation_file_and_images_folder(tmp_path: Path) -> None:
    split = Split("val", tmp_path / "nope", tmp_path / "nope.json")
    errors = validate_dataset("d", [split])["splits"]["val"]["errors"]
    assert "cannot read" in errors["not_coco"]["examples"][0]["message"]
    good = write_dataset(tmp_path / "g", json.dumps(GOOD))
    errors = validate_dataset("d", [Split("val", tmp_path / "none", good.annotations)])
    message = errors["splits"]["val"]["errors"]["image_missing"]["examples"][0]["message"]
    assert "the images folder" in message and "does not exist" in message


def test_bbox_tolerance(tmp_path: Path) -> None:
    assert check(tmp_path, ann(0, bbox=[-0.5, 0, 40.9, 30]))["valid"]
    assert not check(tmp_path, ann(0, bbox=[-0.5, 0, 40.9, 30]), bbox_tolerance=0)["valid"]


@pytest.mark.parametrize(
    ("edit", "kind", "message"),
    [
        (
            lambda d: d["images"].append(
                {"id": 4, "file_name": "a.png", "width": 40, "height": 30}
            ),
            "image_without_annotations",
            "the image has no annotation",
        ),
        (
            lambda d: d["categories"].append({"id": 9, "name": "cow"}),
            "category_without_annotations",
            "category 9 ('cow') has no annotation",
        ),
        (ann(0, area=0), "area_not_positive", "area is 0"),
        (
            lambda d: d["images"].append(
                {"id": 4, "file_name": "a.png", "width": 40, "height": 30}
            ),
            "duplicate_file_name",
            "2 images use this file_name",
        ),
    ],
)
def test_warnings_do_not_make_the_dataset_invalid(tmp_path: Path, edit, kind, message) -> None:
    report = check(tmp_path, edit)
    assert report["valid"] and report["error_count"] == 0
    assert message in report["splits"]["train"]["warnings"][kind]["examples"][0]["message"]


def test_counts_every_problem_but_keeps_the_first_examples(tmp_path: Path) -> None:
    def many(data: dict[str, Any]) -> None:
        for number in range(10):
            data["annotations"].append({**GOOD["annotations"][0], "id": 100 + number, "iscrowd": 5})

    errors = check(tmp_path, many, max_examples=2)["splits"]["train"]["errors"]
    assert errors["iscrowd_invalid"]["count"] == 10
    assert [e["annotation_id"] for e in errors["iscrowd_invalid"]["examples"]] == [100, 101]


def test_splits_must_share_their_categories(tmp_path: Path) -> None:
    train = write_dataset(tmp_path / "train", json.dumps(GOOD))
    other = copy.deepcopy(GOOD)
    other["categories"][0]["name"] = "wolf"
    val = write_dataset(tmp_path / "val", json.dumps(other))
    report = validate_dataset("d", [train, Split("val", val.images, val.annotations)])
    message = report["splits"]["val"]["errors"]["categories_differ"]["examples"][0]["message"]
    assert "categories differ from split 'train': only here [(3, 'wolf')]" in message
    assert "missing here [(3, 'dog')]" in message


def test_write_report_keeps_only_a_valid_report_under_its_name(tmp_path: Path) -> None:
    out = tmp_path / "data" / "d" / "validation.json"
    write_report(check(tmp_path / "good"), out)
    assert json.loads(out.read_text())["valid"]
    bad = check(tmp_path / "bad", ann(0, bbox=[35, 1, 10, 10], iscrowd=3))
    with pytest.raises(PipelineError) as info:
        write_report(bad, out)
    message = str(info.value)
    assert not out.exists() and errors_path(out).is_file()
    assert "dataset 'd': 2 error(s)" in message and str(errors_path(out)) in message
    assert "    bbox_outside_image: 1 (a bbox extends beyond its image" in message
    assert "      - annotation id 1, image id 1, a.png: bbox [35, 1, 10, 10] spans" in message
    write_report(check(tmp_path / "good"), out)
    assert out.is_file() and not errors_path(out).exists()


def test_generated_demo_data_is_valid(tmp_path: Path) -> None:
    generate_synthetic_dataset(
        tmp_path, splits={"train": 4, "val": 2}, image_size=48, max_object_size=30, seed=1
    )
    splits = [
        Split(name, tmp_path / name, tmp_path / "annotations" / f"{name}.json")
        for name in ("train", "val")
    ]
    report = validate_dataset("shapes", splits)
    assert report["valid"], report
    assert [c["name"] for c in report["categories"]] == ["circle", "square", "triangle", "star"]


def test_every_kind_has_a_meaning() -> None:
    assert not set(ERRORS) & set(WARNINGS)
    assert all(ERRORS.values()) and all(WARNINGS.values())


def test_cli(tmp_path: Path) -> None:
    split = write_dataset(tmp_path, json.dumps(GOOD))
    out = tmp_path / "report.json"
    args = ["--images", str(split.images), "--annotations", str(split.annotations)]
    ok = run_script("validate_dataset.py", [*args, "--out", str(out)])
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["splits"]["split"]["counts"]["images"] == 3
    data = copy.deepcopy(GOOD)
    data["annotations"][0]["segmentation"] = [[1, 1, 2, 2]]
    split.annotations.write_text(json.dumps(data))
    bad = run_script("validate_dataset.py", [*args, "--out", str(out)])
    assert bad.returncode != 0 and not out.exists()
    assert "polygon_too_short: 1" in bad.stderr and "Traceback" not in bad.stderr
    assert "--split NAME DIR FILE" in run_script("validate_dataset.py", ["--help"]).stdout


def test_the_dataset_record_has_the_reports_categories_and_checksums(tmp_path: Path) -> None:
    train = write_dataset(tmp_path / "train", json.dumps(GOOD))
    val = write_dataset(tmp_path / "val", json.dumps(GOOD))
    splits = [train, Split("val", val.images, val.annotations)]
    report = validate_dataset("d", splits, ValidationSettings(bbox_tolerance=0.0))
    record = write_dataset_record(
        "d", {s.name: s.annotations for s in splits}, tmp_path / "dataset.json"
    )
    assert json.loads((tmp_path / "dataset.json").read_text()) == record
    for key in ("dataset", "num_categories", "num_classes", "categories"):
        assert record[key] == report[key], key
    assert record["splits"] == {
        name: {"annotations_sha256": split["annotations_sha256"]}
        for name, split in report["splits"].items()
    }


def test_a_record_of_unreadable_annotations_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(PipelineError, match=r"broken\.json: cannot read the annotations"):
        dataset_record("d", {"train": broken})
    broken.write_text("[]")
    with pytest.raises(PipelineError, match=r"broken\.json: no categories list"):
        dataset_record("d", {"train": broken})


def test_the_record_does_not_import_the_checks() -> None:
    """Else editing a check would rerun the record's rule and everything after it."""
    modules = module_inputs(REPO, "maskrcnn_pipeline.data.dataset_record")
    assert modules and not [m for m in modules if "/validation/" in m]
