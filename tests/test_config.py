"""Config validation: defaults from the schema, errors that name the key and the fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from maskrcnn_pipeline.config import (
    load_config,
    predict_settings,
    split_paths,
    train_settings,
    validate_config,
)
from maskrcnn_pipeline.errors import PipelineError
from tests.conftest import REPO, TESTS_DATA

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
    assert "name 'bad/name' must match" in error_of(config)


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


def test_settings_split_by_stage() -> None:
    config = validated(MINIMAL)
    train = train_settings(config, "r")
    predict = predict_settings(config, "r")
    assert "test" not in train and "solver" in train
    assert "solver" not in predict and predict["test"]["score_thresh"] == 0.05
    assert split_paths(config, "d", "val") == {
        "images": "data/d/val",
        "annotations": "data/d/annotations/val.json",
    }


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
