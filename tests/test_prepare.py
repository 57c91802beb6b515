"""The prepare step (data/prepare.py) and what validation makes of it: each fix on a crafted
file, every change counted, the user's file untouched, and a category that training would
never see stopping the run with its cause and the config line that fixes it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torchvision.models.detection.roi_heads import RoIHeads

from maskrcnn_pipeline.data.prepare import PrepareSettings, prepare_annotations, prepare_split
from maskrcnn_pipeline.data.validation import Split, ValidationSettings, validate_dataset
from maskrcnn_pipeline.data.validation.problems import ERRORS, FIXES, WARNINGS, fixes_table
from maskrcnn_pipeline.data.validation.report import write_report
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.model.build import build_model
from maskrcnn_pipeline.workflow.config import validate_config
from tests.support.fixes_table import readme_table
from tests.support.paths import TESTS_DATA

SQUARE = [2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]  # 10x10: area 100


def annotation(number: int, category: int, **changes: Any) -> dict[str, Any]:
    entry = {
        "id": number,
        "image_id": 1,
        "category_id": category,
        "bbox": [2.0, 2.0, 10.0, 10.0],
        "segmentation": [SQUARE],
        "area": 100.0,
        "iscrowd": 0,
    }
    return {**entry, **changes}


def coco(*annotations: dict[str, Any], categories: list[dict[str, Any]] | None = None) -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": categories or [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
        "annotations": list(annotations),
    }


def prepared(data: dict, images: Path = Path("."), **settings: str) -> tuple[dict, dict]:
    return prepare_annotations(copy.deepcopy(data), images, PrepareSettings(**settings))


ROBOFLOW = [
    {"id": 0, "name": "shapes-abc", "supercategory": "none"},
    {"id": 1, "name": "circle", "supercategory": "shapes-abc"},
    {"id": 2, "name": "square", "supercategory": "shapes-abc"},
]


@pytest.mark.parametrize(
    ("categories", "dropped"),
    [
        (ROBOFLOW, "shapes-abc"),
        ([{"id": 0, "name": "_background_", "supercategory": None}, *ROBOFLOW[1:]], "_background_"),
    ],
)
def test_placeholder_categories_are_dropped_and_the_rest_keep_their_ids(
    categories: list[dict[str, Any]], dropped: str
) -> None:
    data = coco(annotation(1, 1), annotation(2, 2), categories=categories)
    out, changes = prepared(data)
    assert [c["id"] for c in out["categories"]] == [1, 2]
    assert [c["name"] for c in changes["categories_dropped"]] == [dropped]
    kept, changes = prepared(data, placeholder_categories="keep")
    assert len(kept["categories"]) == 3
    assert [c["name"] for c in changes["placeholder_categories_kept"]] == [dropped]


def test_a_real_category_without_annotations_is_not_a_placeholder() -> None:
    data = coco(annotation(1, 1))  # 'square' has none, but is nobody's supercategory
    out, changes = prepared(data)
    assert len(out["categories"]) == 2 and not changes["categories_dropped"]
    used = coco(annotation(1, 0), categories=ROBOFLOW)  # category 0 owns an annotation
    assert len(prepared(used)[0]["categories"]) == 3


def test_crowd_objects_become_instances_only_when_set() -> None:
    data = coco(annotation(1, 1, iscrowd=1), annotation(2, 2))
    out, changes = prepared(data, crowd="instances")
    assert [a["iscrowd"] for a in out["annotations"]] == [0, 0]
    assert changes["crowd_as_instances"] == 1
    out, changes = prepared(data)
    assert out["annotations"][0]["iscrowd"] == 1 and changes["crowd_as_instances"] == 0


def test_labelme_rectangles_become_their_polygon() -> None:
    ring = annotation(1, 1, segmentation=[[12.0, 12.0, 2.0, 2.0]])  # corners, drawn backwards
    line = annotation(2, 1, segmentation=[[2.0, 2.0, 2.0, 12.0]])
    out, changes = prepared(coco(ring, line))
    assert out["annotations"][0]["segmentation"] == [SQUARE]
    assert out["annotations"][1]["segmentation"] == [[2.0, 2.0, 2.0, 12.0]]  # for the validator
    assert changes["rectangles_as_polygons"] == 1


def test_missing_sizes_are_read_from_the_file(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    data = coco(annotation(1, 1))
    data["images"][0].update(width=None, height=0)
    data["images"].append({"id": 2, "file_name": "gone.png", "width": 0, "height": 0})
    out, changes = prepared(data, tmp_path)
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (40, 30)
    assert out["images"][1]["width"] == 0  # no file: the validator reports it
    assert changes["image_sizes_filled"] == 1


def test_areas_that_disagree_with_the_mask_are_recomputed() -> None:
    box_area = annotation(1, 1, segmentation=[[2, 2, 12, 2, 2, 12]], area=100.0)  # half
    rounding = annotation(2, 1, area=100.5)
    box_only = annotation(3, 1, segmentation=[], area=100.0)
    out, changes = prepared(coco(box_area, rounding, box_only))
    assert [a["area"] for a in out["annotations"]] == [pytest.approx(55, abs=10), 100.5, 100.0]
    assert changes["areas_recomputed"] == 1


def test_keys_a_tool_leaves_out_are_filled() -> None:
    bare = annotation(1, 1)
    del bare["iscrowd"], bare["segmentation"]
    out, changes = prepared(coco(bare))
    assert (out["annotations"][0]["iscrowd"], out["annotations"][0]["segmentation"]) == (0, [])
    assert (changes["iscrowd_filled"], changes["box_only_filled"]) == (1, 1)
    unlabelled = coco()
    del unlabelled["annotations"]
    out, changes = prepared(unlabelled)
    assert out["annotations"] == [] and changes["annotations_list_added"] == 1


def test_prepare_split_never_touches_the_users_file(tmp_path: Path) -> None:
    source = tmp_path / "mine.json"
    text = json.dumps(coco(annotation(1, 1, iscrowd=1), categories=ROBOFLOW))
    source.write_text(text)
    changes = prepare_split(source, tmp_path, tmp_path / "out.json", PrepareSettings("instances"))
    assert source.read_text() == text
    assert changes["crowd_as_instances"] == 1
    assert json.loads((tmp_path / "out.json").read_text())["annotations"][0]["iscrowd"] == 0
    source.write_text("{not json")
    prepare_split(source, tmp_path, tmp_path / "out.json", PrepareSettings())
    assert (tmp_path / "out.json").read_text() == "{not json"  # for the validator to report


def validate(tmp_path: Path, data: dict, *, trains: bool = True, **settings: str) -> dict[str, Any]:
    """prepare + validate one split named train, as the rules run them."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.new("RGB", (40, 30)).save(images / "a.png")
    source = tmp_path / "export" / "instances_train.json"
    source.parent.mkdir(exist_ok=True)
    source.write_text(json.dumps(data))
    fixes = PrepareSettings(**settings)
    changes = prepare_split(source, images, tmp_path / "train.json", fixes)
    changes_file = tmp_path / "train.changes.json"
    changes_file.write_text(json.dumps({"settings": vars(fixes), "changes": changes}))
    split = Split(
        "train",
        images,
        tmp_path / "train.json",
        tmp_path / "export" / "images",
        source,
        changes=changes_file,
        trains=trains,
    )
    return validate_dataset("mine", [split], ValidationSettings())


CVAT_LIKE = coco(
    annotation(1, 1, iscrowd=1), annotation(2, 1, iscrowd=1), annotation(3, 2), annotation(4, 2)
)


def test_a_class_annotated_only_as_crowd_stops_the_run_with_the_fix(tmp_path: Path) -> None:
    report = validate(tmp_path, CVAT_LIKE)
    errors = report["splits"]["train"]["errors"]
    assert list(errors) == ["category_not_trainable"]
    message = errors["category_not_trainable"]["examples"][0]["message"]
    assert "all 2 'circle' annotations are iscrowd=1, as CVAT exports masks" in message
    assert "datasets.mine.crowd: instances" in message
    with pytest.raises(PipelineError) as failed:
        write_report(report, tmp_path / "validation.json")
    assert str(tmp_path / "export" / "instances_train.json") in str(failed.value)
    assert "what to do:" in str(failed.value)
    assert validate(tmp_path, CVAT_LIKE, trains=False)["valid"]  # only a split a run trains on


def test_per_category_counts_after_crowd_instances(tmp_path: Path) -> None:
    report = validate(tmp_path, CVAT_LIKE, crowd="instances")
    assert report["valid"]
    split = report["splits"]["train"]
    assert split["categories"] == [
        {"id": 1, "name": "circle", "annotations": 2, "crowd": 0, "box_only": 0, "trainable": 2},
        {"id": 2, "name": "square", "annotations": 2, "crowd": 0, "box_only": 0, "trainable": 2},
    ]
    assert split["prepared"]["changes"]["crowd_as_instances"] == 2


def test_box_only_objects_are_refused_or_counted(tmp_path: Path) -> None:
    data = coco(annotation(1, 1), annotation(2, 2, segmentation=[]))
    refused = validate(tmp_path, data, box_only="refuse")
    assert list(refused["splits"]["train"]["errors"]) == ["segmentation_empty"]
    with pytest.raises(PipelineError, match=r"datasets\.mine\.box_only: skip_mask"):
        write_report(refused, tmp_path / "validation.json")
    counted = validate(tmp_path, data, box_only="skip_mask")
    assert counted["valid"]
    assert counted["splits"]["train"]["warnings"]["box_only"]["count"] == 1
    square = counted["splits"]["train"]["categories"][1]
    assert (square["box_only"], square["trainable"]) == (1, 1)


def test_validation_messages_name_the_users_folder(tmp_path: Path) -> None:
    data = coco(annotation(1, 1), annotation(2, 2))
    data["images"][0]["file_name"] = "missing.png"
    report = validate(tmp_path, data)
    example = report["splits"]["train"]["errors"]["image_missing"]["examples"][0]
    assert str(tmp_path / "export" / "images" / "missing.png") in example["message"]


def test_every_kind_has_a_fix_and_the_readme_table_is_current() -> None:
    assert set(FIXES) == set(ERRORS) | set(WARNINGS)
    assert readme_table() == fixes_table(), (
        "README's table of fixes is stale: python -m tests.support.fixes_table --write"
    )


def tiny_model(num_classes: int = 2) -> torch.nn.Module:
    import yaml

    run = validate_config(yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text()))["runs"]["tiny"]
    torch.manual_seed(0)
    return build_model(run["model"], num_classes=num_classes, input_settings=run["input"]).train()


def losses(model: torch.nn.Module, **extra: torch.Tensor) -> dict[str, float]:
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 10:30] = 1
    masks[1, 35:60, 35:60] = 1
    target = {
        "boxes": torch.tensor([[10.0, 10, 30, 30], [35, 35, 60, 60]]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
        **extra,
    }
    torch.manual_seed(1)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    return {k: float(v.detach()) for k, v in model([image], [target]).items()}


def test_the_mask_loss_leaves_out_box_only_objects_and_only_them() -> None:
    model = tiny_model()
    ours = losses(model)
    model.roi_heads.__class__ = RoIHeads  # torchvision's own heads, same weights
    assert losses(model) == ours  # every object with a mask: torchvision's loss exactly
    model = tiny_model()
    assert losses(model, has_mask=torch.tensor([True, True])) == ours
    partial = losses(model, has_mask=torch.tensor([True, False]))
    none = losses(model, has_mask=torch.tensor([False, False]))
    for key in ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"):
        assert partial[key] == none[key] == ours[key]  # the box head trains on them all
    assert partial["loss_mask"] != ours["loss_mask"] and none["loss_mask"] == 0.0


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_segm_evaluation_treats_box_only_objects_as_crowd_regions(
    tmp_path: Path, backend: str
) -> None:
    """A box-only object has no mask to compare with: no crash, and no miss in segm AP, while
    the box evaluation still counts it."""
    from pycocotools import mask as mask_utils

    from maskrcnn_pipeline.evaluation import evaluate_coco

    data = coco(annotation(1, 1), annotation(2, 1, bbox=[20, 10, 10, 10], segmentation=[]))
    (tmp_path / "gt.json").write_text(json.dumps(data))
    rle = mask_utils.merge(mask_utils.frPyObjects([SQUARE], 30, 40))
    rle["counts"] = rle["counts"].decode()
    found = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [2, 2, 10, 10]}
    result = evaluate_coco(tmp_path / "gt.json", [{**found, "segmentation": rle}], backend=backend)
    assert result.stats["segm"]["AP"] == pytest.approx(1.0)
    assert result.stats["bbox"]["AR100"] == pytest.approx(0.5)  # the box-only one was missed
