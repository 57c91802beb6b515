"""Which settings rerun a stage (params) and which only reach its job (operational)."""

from __future__ import annotations

import argparse
import copy
import json

import pytest
import yaml

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.params import (
    OPERATIONAL_KEYS,
    merge_operational,
    predict_settings,
    split_operational,
    stage_operational,
    stage_params,
    train_settings,
)
from maskrcnn_pipeline.workflow.settings_args import (
    add_settings_arguments,
    resolve_settings,
    resolve_split_settings,
)

MINIMAL = {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {"dataset": "d"}}}


@pytest.fixture
def config() -> dict:
    return validate_config(copy.deepcopy(MINIMAL))


def test_settings_split_by_stage(config: dict) -> None:
    train = train_settings(config, "r")
    predict = predict_settings(config, "r")
    assert "test" not in train and "solver" in train
    assert "solver" not in predict and predict["test"]["score_thresh"] == 0.05


def test_operational_settings_leave_the_training_params(config: dict) -> None:
    params = stage_params(config, "r", "train")
    operational = stage_operational(config, "r", "train")
    assert operational == {
        "threads": 0,
        "log_period": 20,
        "checkpoint": {"period": 2500, "keep": 3},
        "dataloader": {"workers": 4, "timeout": 600, "sharing_strategy": "file_descriptor"},
        "rendezvous": {"port": 29500, "timeout": 300},
    }
    assert "threads" not in params and "log_period" not in params
    assert "checkpoint" not in params and "rendezvous" not in params  # only operational keys
    assert params["dataloader"] == {
        "cache_images": False,
        "aspect_ratio_grouping": True,
        "gpu_decode": False,
    }
    assert params["solver"] == train_settings(config, "r")["solver"]


@pytest.mark.parametrize("stage", ["train", "predict"])
def test_merging_the_split_gives_back_every_setting(config: dict, stage: str) -> None:
    config["runs"]["r"]["eval_period"] = 10  # brings test into the training settings
    settings = (train_settings if stage == "train" else predict_settings)(config, "r")
    params, operational = split_operational(settings, stage)
    assert merge_operational(params, operational) == settings
    for dotted in OPERATIONAL_KEYS[stage]:
        node = params
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part, {})
        assert leaf not in node


def test_predict_keeps_threads_and_processes_apart(config: dict) -> None:
    """How many processes predict cannot change the predictions (test_predict_sharding)."""
    operational = {"threads": 0, "gpus": 8, "cpu_processes": 1}
    assert stage_operational(config, "r", "predict") == operational
    assert not set(operational) & set(stage_params(config, "r", "predict"))


def test_a_changed_operational_setting_leaves_the_params_equal(config: dict) -> None:
    before = stage_params(config, "r", "train")
    run = config["runs"]["r"]
    run.update(threads=3, log_period=5)
    run["checkpoint"].update(period=7, keep=1)
    run["dataloader"].update(workers=0, timeout=5, sharing_strategy="file_system")
    assert stage_params(config, "r", "train") == before
    run["dataloader"]["cache_images"] = True
    assert stage_params(config, "r", "train") != before


def parser(kind: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser()
    add_settings_arguments(result, kind=kind)
    return result


def test_a_script_merges_what_the_rule_passes_apart() -> None:
    args = parser("train").parse_args(
        [
            "--settings",
            json.dumps({"solver": {"max_iter": 4}, "dataloader": {"cache_images": True}}),
            "--operational",
            json.dumps({"threads": 2, "dataloader": {"workers": 1}}),
        ]
    )
    assert resolve_settings(args, kind="train") == {
        "solver": {"max_iter": 4},
        "dataloader": {"cache_images": True, "workers": 1},
        "threads": 2,
    }


def test_settings_without_operational_are_refused() -> None:
    args = parser("predict").parse_args(["--settings", "{}"])
    with pytest.raises(PipelineError, match="--settings needs --operational"):
        resolve_settings(args, kind="predict")


def test_config_and_run_by_hand_give_the_same_split(config: dict, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    args = parser("train").parse_args(["--config", str(path), "--run", "r"])
    assert resolve_split_settings(args, kind="train") == (
        stage_params(config, "r", "train"),
        stage_operational(config, "r", "train"),
    )
    assert resolve_settings(args, kind="train") == train_settings(config, "r")
