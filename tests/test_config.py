"""Config validation: defaults from the schema, errors that name the key and the fix."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.workflow.config import (
    checksums,
    comparison_run_info,
    dataset_files,
    download_files,
    load_config,
    newer_than_all,
    original_split_paths,
    remote_url,
    source_files,
    source_split_paths,
    split_paths,
    split_sources,
    validate_config,
)
from tests.support.paths import REPO, TESTS_DATA

MINIMAL = {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {"dataset": "d"}}}


def validated(config: dict) -> dict:
    return validate_config(copy.deepcopy(config))


def error_of(config: dict) -> str:
    with pytest.raises(PipelineError) as info:
        validated(config)
    return str(info.value)


def test_defaults_are_nvidia_recipe() -> None:
    run = validated(MINIMAL)["runs"]["r"]
    solver = run["solver"]
    assert (solver["optimizer"], solver["base_lr"], solver["reference_batch_size"]) == (
        "sgd",
        0.12,
        96,
    )
    assert (solver["max_iter"], solver["steps"], solver["warmup_iters"]) == (
        16667,
        [12000, 16000],
        800,
    )
    assert (solver["warmup_method"], solver["warmup_factor"], solver["bias_lr_factor"]) == (
        "mlperf_linear",
        0.0001,
        2.0,
    )
    assert run["input"]["min_size_train"] == [800] and run["input"]["max_size_train"] == 1333
    assert run["model"]["norm"] == "frozen_bn" and run["model"]["trainable_backbone_layers"] == 3
    assert (run["gpus"], run["precision"], run["channels_last"]) == (8, "fp16", True)
    assert run["test"]["detections_per_img"] == 100


def test_shipped_configs_validate() -> None:
    for path in (REPO / "config.yaml", REPO / "configs" / "demo.yaml", TESTS_DATA / "tiny.yaml"):
        assert load_config(path)["runs"]


def test_unknown_key_names_its_path_and_the_allowed_keys() -> None:
    config = copy.deepcopy(MINIMAL)
    config["runs"]["r"]["solver"] = {"base_lr": 0.1, "bse_lr": 0.2}
    message = error_of(config)
    assert "runs.r.solver: unknown key(s) 'bse_lr'" in message
    assert "base_lr" in message.split("allowed keys:")[1]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("runs", "r", "precision"),
            "fp8",
            "runs.r.precision: 'fp8' is not allowed; choose one of",
        ),
        (("runs", "r", "solver", "base_lr"), -1, "runs.r.solver.base_lr: -1 is less than or equal"),
        (("runs", "r", "gpus"), "two", "runs.r.gpus: 'two' is not of type 'integer'"),
        (("datasets", "d", "source"), "ftp", "datasets.d.source: 'ftp' is not allowed"),
    ],
)
def test_bad_values_name_the_key(path: tuple[str, ...], value: object, expected: str) -> None:
    config = copy.deepcopy(MINIMAL)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert expected in error_of(config)


def test_bad_names_are_rejected() -> None:
    config = copy.deepcopy(MINIMAL)
    config["runs"]["bad/name"] = {"dataset": "d"}
    assert "name 'bad/name' is not allowed" in error_of(config)


def test_run_must_name_a_dataset_and_its_splits() -> None:
    config = copy.deepcopy(MINIMAL)
    config["runs"]["r"]["dataset"] = "coco"
    assert "runs.r.dataset: 'coco' is not a dataset; defined datasets: d" in error_of(config)
    config["runs"]["r"].update(dataset="d", eval_split="test")
    assert "runs.r.eval_split: dataset 'd' has no split 'test'; its splits: train, val" in error_of(
        config
    )


def test_folder_dataset_needs_splits() -> None:
    config = {"datasets": {"d": {"source": "folder"}}, "runs": {"r": {"dataset": "d"}}}
    assert "'splits' is a required property" in error_of(config)


def test_steps_must_increase() -> None:
    config = copy.deepcopy(MINIMAL)
    config["runs"]["r"]["solver"] = {"steps": [5, 3]}
    assert "runs.r.solver.steps: must be increasing" in error_of(config)


def test_load_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"missing\.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: [unclosed")
    with pytest.raises(PipelineError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"datasets": {}, "runs": {}}))
    with pytest.raises(PipelineError, match=r"wrong\.yaml: invalid configuration"):
        load_config(wrong)


def test_the_comparison_knows_each_runs_dataset_split_engine_and_gpus() -> None:
    config = copy.deepcopy(MINIMAL)
    config["runs"]["a"] = {"dataset": "d", "gpus": 2, "nodes": 2, "precision": "bf16"}
    assert comparison_run_info(validated(config)) == {
        "r": {
            "dataset": "d",
            "eval_split": "val",
            "engine": "torchvision",
            "gpus": 8,
            "precision": "fp16",
        },
        "a": {
            "dataset": "d",
            "eval_split": "val",
            "engine": "torchvision",
            "gpus": 4,
            "precision": "bf16",
        },
    }


def test_a_datasets_files_are_its_source_files_and_the_prepared_copies() -> None:
    prepared = [
        "data/d/annotations/train.json",
        "data/d/annotations/train.changes.json",
        "data/d/annotations/val.json",
        "data/d/annotations/val.changes.json",
    ]
    config = validated(MINIMAL)
    assert source_files(config, "d") == [
        "data/d/train",
        "data/d/annotations/source/train.json",
        "data/d/val",
        "data/d/annotations/source/val.json",
    ]
    assert dataset_files(config, "d") == source_files(config, "d") + prepared
    config = validated(DOWNLOAD)
    assert source_files(config, "coco") == [
        f"data/coco/.unpacked/{name}.json" for name in download_files(config, "coco")
    ]
    assert dataset_files(config, "coco")[-2:] == [
        "data/coco/annotations/val.json",
        "data/coco/annotations/val.changes.json",
    ]


def test_a_report_is_newer_than_its_data_until_the_data_changes(tmp_path: Path) -> None:
    data, link, report = tmp_path / "val.json", tmp_path / "link.json", tmp_path / "report"
    data.write_text("{}")
    link.symlink_to(data)
    assert not newer_than_all(str(report), [str(data)])  # no report yet
    report.write_text("{}")
    os.utime(data, (1, 1))
    os.utime(link, (1, 1), follow_symlinks=False)
    assert newer_than_all(str(report), [str(link), str(tmp_path / "missing")])
    os.utime(data, None)  # the link's target changed in place
    assert not newer_than_all(str(report), [str(link)])


def test_split_paths_are_under_the_dataset_folder() -> None:
    config = validated(MINIMAL)
    assert split_paths(config, "d", "val") == {
        "images": "data/d/val",
        "annotations": "data/d/annotations/val.json",
    }


DOWNLOAD = {
    "datasets": {
        "coco": {
            "source": "download",
            "files": {
                "val2017.zip": {
                    "url": "http://images.cocodataset.org/zips/val2017.zip",
                    "md5": "a" * 32,
                },
                "extra.tgz": {
                    "url": "https://example.org/x/extra.tgz",
                    "sha256": "B" * 64,
                    "enabled": False,
                },
            },
            "splits": {
                "val": {"images": "val2017", "annotations": "annotations/instances_val2017.json"}
            },
        }
    },
    "runs": {"r": {"dataset": "coco", "train_split": "val"}},
}


def folder_config(root: str | None, images: str = "train2017") -> dict:
    dataset: dict = {
        "source": "folder",
        "splits": {"train": {"images": images, "annotations": "ann/train.json"}},
    }
    if root is not None:
        dataset["root"] = root
    return {"datasets": {"c": dataset}, "runs": {"r": {"dataset": "c", "eval_split": "train"}}}


def test_split_paths_have_one_shape_under_data_for_every_source() -> None:
    """Every stage reads the prepared annotations; prepare reads what the source left."""
    download = validated(DOWNLOAD)
    assert split_paths(download, "coco", "val") == {
        "images": "data/coco/val2017",
        "annotations": "data/coco/annotations/val.json",
    }
    assert source_split_paths(download, "coco", "val") == {
        "images": "data/coco/val2017",
        "annotations": "data/coco/annotations/instances_val2017.json",
    }
    folder = validated(folder_config("/shared/coco"))
    assert split_paths(folder, "c", "train") == {
        "images": "data/c/train",
        "annotations": "data/c/annotations/train.json",
    }
    assert source_split_paths(folder, "c", "train")["annotations"] == (
        "data/c/annotations/source/train.json"
    )
    assert original_split_paths(folder, "c", "train") == split_sources(folder, "c", "train")
    assert split_sources(folder, "c", "train") == {
        "images": "/shared/coco/train2017",
        "annotations": "/shared/coco/ann/train.json",
    }
    assert split_sources(validated(folder_config(None)), "c", "train")["images"] == "train2017"


def test_download_files_defaults_and_mirror() -> None:
    config = validated(DOWNLOAD)
    files = download_files(config)
    assert list(files) == ["val2017.zip"]  # extra.tgz is disabled
    assert (files["val2017.zip"]["unpack"], files["val2017.zip"]["enabled"]) == (".", True)
    entry = config["datasets"]["coco"]["files"]["extra.tgz"]
    assert checksums(entry) == {"sha256": "b" * 64}
    assert remote_url(config, "val2017.zip", files["val2017.zip"]).startswith("http://images.")
    config["download"]["mirror"] = "file:///shared/mirror/"
    assert (
        remote_url(config, "val2017.zip", files["val2017.zip"])
        == "file:///shared/mirror/val2017.zip"
    )
    assert config["download"] == {
        "mirror": "file:///shared/mirror/",
        "retries": 5,
        "timeout": 60,
        "max_unknown_size_gb": 100,
        "lock_file": "weights.lock.json",
    }


def test_default_config_downloads_coco_and_the_backbone() -> None:
    config = load_config(REPO / "config.yaml")
    assert set(download_files(config)) == {
        "train2017.zip",
        "val2017.zip",
        "annotations_trainval2017.zip",
    }
    md5s = {name: entry["md5"] for name, entry in download_files(config).items()}
    assert md5s["train2017.zip"] == "cced6f7f71b7629ddf16f17bbcfab6b2"
    weights = config["runs"]["r50_fpn_1x"]["model"]["backbone_weights"]
    assert weights == "data/weights/resnet50-0676ba61.pth"
    assert config["weights"]["resnet50-0676ba61.pth"]["sha256_prefix"] == "0676ba61"


def edited(base: dict, edit) -> dict:
    config = copy.deepcopy(base)
    edit(config)
    return config


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            edited(DOWNLOAD, lambda c: c["datasets"]["coco"]["files"]["val2017.zip"].pop("md5")),
            "datasets.coco.files.val2017.zip: give md5, sha256 or sha256_prefix",
            id="no-checksum",
        ),
        pytest.param(
            edited(DOWNLOAD, lambda c: c.update(weights={"w.pth": {"url": "https://x.org/w.pth"}})),
            "weights.w.pth: give md5, sha256 or sha256_prefix",
            id="weights-without-checksum",
        ),
        pytest.param(
            edited(DOWNLOAD, lambda c: c["datasets"]["coco"]["splits"]["val"].update(images="/x")),
            "datasets.coco.splits.val.images: '/x' must be a relative path inside data/<dataset>/",
            id="absolute-download-split",
        ),
        pytest.param(
            edited(
                DOWNLOAD,
                lambda c: c["datasets"]["coco"]["files"]["val2017.zip"].update(unpack="../.."),
            ),
            "datasets.coco.files.val2017.zip.unpack: '../..' must be a relative path",
            id="unpack-outside",
        ),
        pytest.param(
            edited(DOWNLOAD, lambda c: c["datasets"]["coco"].update(root="/shared")),
            "datasets.coco.root: not used by source download; remove it",
            id="root-for-download",
        ),
        pytest.param(
            edited(
                DOWNLOAD,
                lambda c: c["datasets"]["coco"]["files"]["val2017.zip"].update(url="ftp://x/v.zip"),
            ),
            "datasets.coco.files.val2017.zip.url: 'ftp://x/v.zip' does not match",
            id="ftp-url",
        ),
        pytest.param(
            edited(DOWNLOAD, lambda c: c.update(download={"mirror": "s3://bucket"})),
            "download.mirror: 's3://bucket' does not match",
            id="mirror-scheme",
        ),
        pytest.param(
            edited(
                DOWNLOAD,
                lambda c: c["datasets"].update(
                    other=edited(
                        c["datasets"]["coco"],
                        lambda d: d["files"]["val2017.zip"].update(md5="b" * 32),
                    )
                ),
            ),
            "datasets.other.files.val2017.zip: datasets.coco defines a different file of that name",
            id="same-name-other-file",
        ),
        pytest.param(
            edited(
                DOWNLOAD,
                lambda c: c["runs"]["r"].update(model={"backbone_weights": "data/weights/r.pth"}),
            ),
            "runs.r.model.backbone_weights: data/weights/r.pth is fetched from a weights entry "
            "named 'r.pth', and there is none",
            id="unknown-weights",
        ),
        pytest.param(
            edited(
                folder_config("data/c"),
                lambda c: c["datasets"]["c"]["splits"]["train"].update(images="train"),
            ),
            "datasets.c.splits.train.images: 'data/c/train' is where the pipeline puts its link",
            id="folder-is-its-own-link",
        ),
        pytest.param(
            edited(
                folder_config("/s"),
                lambda c: c["datasets"]["c"]["splits"].update(
                    annotations=c["datasets"]["c"]["splits"]["train"]
                ),
            ),
            "datasets.c.splits.annotations: the split name 'annotations' is reserved",
            id="reserved-split-name",
        ),
        pytest.param(
            edited(
                MINIMAL,
                lambda c: c["datasets"]["d"].update(
                    splits={"a": {"images": "i", "annotations": "a.json"}}
                ),
            ),
            "datasets.d.splits: not used by source synthetic",
            id="splits-for-synthetic",
        ),
    ],
)
def test_data_sources_are_checked(config: dict, expected: str) -> None:
    assert expected in error_of(config)


def test_synthetic_and_validation_defaults_are_filled_in() -> None:
    dataset = validated(MINIMAL)["datasets"]["d"]
    assert dataset["synthetic"]["train_images"] == 800
    assert dataset["validation"] == {"bbox_tolerance": 1.0, "decode_images": False}


def test_inference_entries_name_an_existing_run() -> None:
    config = copy.deepcopy(MINIMAL)
    config["inference"] = {"street": {"run": "r", "images": "photos"}}
    assert validated(config)["inference"]["street"]["run"] == "r"
    config["inference"]["street"]["run"] = "r2"
    assert "inference.street.run: 'r2' is not a run; defined runs: r" in error_of(config)
    config["inference"]["street"] = {"run": "r"}
    assert "inference.street: 'images' is a required property" in error_of(config)


def test_reference_lines_default_to_nvidia_and_are_checked() -> None:
    (reference,) = validated(MINIMAL)["report"]["references"]
    assert reference["datasets"] == ["coco2017"]
    assert (reference["bbox"], reference["segm"]) == (0.3763, 0.3417)
    config = copy.deepcopy(MINIMAL)
    config["report"] = {"references": [{"label": "x", "datasets": ["d"]}]}
    assert "report.references[0]" in error_of(config)
    config["report"]["references"][0]["bbox"] = 37.6
    assert "report.references[0].bbox: 37.6 is greater than the maximum of 1" in error_of(config)


def tool_config(tool: str | None, split: dict | None = None) -> dict:
    dataset: dict = {"source": "folder", "root": "/exports/x", "splits": {"train": split or {}}}
    if tool:
        dataset["format"] = tool
    return {"datasets": {"x": dataset}, "runs": {"r": {"dataset": "x", "eval_split": "train"}}}


@pytest.mark.parametrize(
    ("tool", "images", "annotations"),
    [
        ("cvat", "images/train", "annotations/instances_train.json"),
        ("roboflow", "train", "train/_annotations.coco.json"),
        ("labelstudio", "train", "train/result.json"),
        ("labelme", "train", "train/annotations.json"),
        ("fiftyone", "train/data", "train/labels.json"),
    ],
)
def test_a_tools_format_knows_where_the_tool_puts_a_split(
    tool: str, images: str, annotations: str
) -> None:
    config = validated(tool_config(tool))
    assert split_sources(config, "x", "train") == {
        "images": f"/exports/x/{images}",
        "annotations": f"/exports/x/{annotations}",
    }
    mine = validated(tool_config(tool, {"annotations": "mine.json"}))
    assert split_sources(mine, "x", "train")["annotations"] == "/exports/x/mine.json"


def test_a_coco_split_without_paths_names_the_format_key() -> None:
    message = error_of(tool_config(None))
    assert "datasets.x.splits.train.images: missing" in message
    assert "datasets.x.format" in message and "cvat" in message


def test_a_download_archive_cannot_hold_the_prepared_copy() -> None:
    config = copy.deepcopy(DOWNLOAD)
    config["datasets"]["coco"]["splits"]["val"]["annotations"] = "annotations/val.json"
    assert "is where the prepared copy goes" in error_of(config)


def test_a_datasets_fixes_come_from_its_format_unless_it_sets_them() -> None:
    from maskrcnn_pipeline.workflow.config import dataset_fixes

    cvat = validated(tool_config("cvat"))["datasets"]["x"]
    assert dataset_fixes(cvat) == {
        "crowd": "instances",
        "box_only": "skip_mask",
        "placeholder_categories": "drop",
    }
    coco = validated(tool_config(None, {"images": "i", "annotations": "a.json"}))["datasets"]["x"]
    assert dataset_fixes(coco)["crowd"] == "ignore" and dataset_fixes(coco)["box_only"] == "refuse"
    cvat["crowd"] = "ignore"
    assert dataset_fixes(cvat)["crowd"] == "ignore"
