"""Training on the CPU: outputs, exact resume, the non-finite loss error, model building."""

from __future__ import annotations

import copy
import json
import signal
from pathlib import Path

import pytest
import torch
import yaml

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.model.build import build_model
from maskrcnn_pipeline.train.hooks import Progress
from maskrcnn_pipeline.train.loop import Trainer
from maskrcnn_pipeline.train.optimizer import IterationLR
from maskrcnn_pipeline.train.run import TrainingInterrupted, TrainPaths, train
from maskrcnn_pipeline.train.schedule import Schedule
from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.params import merge_operational, split_operational, train_settings
from tests.conftest import TESTS_DATA, make_tiny_dataset, run_script


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    return validate_config(yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text()))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def settings_of(config: dict, **solver: object) -> dict:
    settings = copy.deepcopy(train_settings(config, "tiny"))
    settings["solver"].update(solver)
    return settings


def paths(data: Path, out: Path) -> TrainPaths:
    return TrainPaths(data / "train", data / "annotations" / "train.json", out)


def test_train_writes_model_metrics_and_provenance(tiny_config, tiny_data, tmp_path) -> None:
    train(settings_of(tiny_config), paths(tiny_data, tmp_path))
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["iteration"] == 4 and len(final["categories"]) == 4
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [2, 4]
    assert all(x["loss"] > 0 and x["images_per_s"] > 0 for x in lines)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert {"git", "packages", "hardware", "inputs", "settings"} <= set(provenance)


def interrupt_at(monkeypatch: pytest.MonkeyPatch, iteration: int) -> None:
    """Deliver a stop request during ``iteration``, as the SIGTERM handler would; the
    processes agree on it in the next iteration's collective and stop after that one."""
    original = Progress.after_step

    def after_step(self, trainer, result):
        original(self, trainer, result)
        if result.iteration == iteration:
            trainer.request_stop(signal.SIGTERM)

    monkeypatch.setattr(Progress, "after_step", after_step)


def test_resume_gives_the_same_weights_as_a_straight_run(
    tiny_config: dict, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        straight = tmp_path / "straight"
        train(settings_of(tiny_config, max_iter=4), paths(tiny_data, straight))
        resumed = tmp_path / "resumed"
        with monkeypatch.context() as patch:
            interrupt_at(patch, 2)
            with pytest.raises(TrainingInterrupted, match="after iteration 3"):
                train(settings_of(tiny_config, max_iter=4), paths(tiny_data, resumed))
        assert not (resumed / "model_final.pth").exists()
        train(settings_of(tiny_config, max_iter=4), paths(tiny_data, resumed))
    finally:
        torch.use_deterministic_algorithms(False)
    a = torch.load(straight / "model_final.pth", weights_only=False)["model"]
    b = torch.load(resumed / "model_final.pth", weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [2, 4]


def test_checkpoints_of_other_settings_are_moved_aside_not_resumed(
    tiny_config: dict, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        interrupt_at(patch, 2)
        with pytest.raises(TrainingInterrupted):
            train(settings_of(tiny_config, max_iter=4), paths(tiny_data, tmp_path))
    train(settings_of(tiny_config, max_iter=4, base_lr=0.002), paths(tiny_data, tmp_path))
    assert (tmp_path / "checkpoints.previous" / "model_0000003.pth").is_file()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [2, 4]


def test_other_operational_settings_resume_the_checkpoint(
    tiny_config: dict, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(tiny_config, max_iter=4)
    params, operational = split_operational(settings, "train")
    with monkeypatch.context() as patch:
        interrupt_at(patch, 2)
        with pytest.raises(TrainingInterrupted):
            train(settings, paths(tiny_data, tmp_path), resume_settings=params)
    operational.update(threads=2, log_period=1, checkpoint={"period": 3, "keep": 1})
    other = merge_operational(params, operational)
    train(other, paths(tiny_data, tmp_path), resume_settings=params)
    assert not (tmp_path / "checkpoints.previous").exists()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [2, 4]  # resumed after 3, logs 4


def test_periodic_evaluation_logs_ap_and_early_stop_ends_training(
    tiny_config: dict, tiny_data: Path, tmp_path: Path
) -> None:
    settings = settings_of(tiny_config, max_iter=6)
    settings.update(
        eval_period=2,
        early_stop={"bbox_ap": 0.0, "segm_ap": None},
        test=tiny_config["runs"]["tiny"]["test"],
    )
    run_paths = TrainPaths(
        tiny_data / "train",
        tiny_data / "annotations" / "train.json",
        tmp_path,
        tiny_data / "val",
        tiny_data / "annotations" / "val.json",
    )
    train(settings, run_paths)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluations = [x for x in lines if "eval" in x]
    assert [x["iteration"] for x in evaluations] == [2]
    assert set(evaluations[0]["eval"]) == {"bbox", "segm"}
    assert len(evaluations[0]["eval"]["segm"]) == 12
    assert torch.load(tmp_path / "model_final.pth", weights_only=False)["iteration"] == 2


class _NaNModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, images, targets):
        return {"loss_a": (self.weight * float("nan")).sum()}


def test_non_finite_loss_stops_with_the_iteration() -> None:
    model = _NaNModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    solver = {
        "max_iter": 10,
        "scheduler": "multistep",
        "steps": [],
        "gamma": 0.1,
        "final_lr_factor": 0.0,
        "warmup_iters": 0,
        "warmup_factor": 1.0,
        "warmup_method": "linear",
    }
    batch = ([torch.zeros(3, 4, 4, dtype=torch.uint8)], [{"labels": torch.zeros(1)}])
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=IterationLR(optimizer, Schedule.from_settings(solver)),
        batches=iter([batch] * 10),
        device=torch.device("cpu"),
        max_iter=10,
        iteration=6,
    )
    with pytest.raises(PipelineError, match=r"non-finite loss at iteration 7 \(loss=nan"):
        trainer.run()


def test_small_model_trains_and_predicts(tiny_config) -> None:
    run = tiny_config["runs"]["tiny"]
    model = build_model(run["model"], num_classes=3, input_settings=run["input"])
    image = torch.rand(3, 64, 64)
    target = {
        "boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]),
        "labels": torch.tensor([2]),
        "masks": torch.zeros(1, 64, 64, dtype=torch.uint8),
    }
    losses = model([image], [target])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    model.eval()
    with torch.no_grad():
        (output,) = model([image])
    assert set(output) == {"boxes", "labels", "scores", "masks"}


def test_a_channels_last_model_trains_on_batches_of_plain_images(tiny_config: dict) -> None:
    """On GPUs the recipe converts the weights to channels-last; inputs stay [3, H, W]."""
    run = tiny_config["runs"]["tiny"]
    model = build_model(run["model"], num_classes=3, input_settings=run["input"])
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    solver = {**run["solver"], "warmup_method": "linear"}
    target = {
        "boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]),
        "labels": torch.tensor([2]),
        "masks": torch.ones(1, 64, 64, dtype=torch.uint8),
    }
    batch = ([torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)], [target])
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=IterationLR(optimizer, Schedule.from_settings(solver)),
        batches=iter([batch]),
        device=torch.device("cpu"),
        max_iter=1,
    )
    trainer.run()
    assert trainer.iteration == 1


def test_resnet50_recipe_freezes_stem_and_stage_one() -> None:
    config = validate_config(
        {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {"dataset": "d"}}}
    )
    run = config["runs"]["r"]
    model = build_model(run["model"], num_classes=80, input_settings=run["input"])
    body = model.backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters())
    assert not any(p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert type(body.bn1).__name__ == "FrozenBatchNorm2d"
    assert model.roi_heads.box_predictor.cls_score.out_features == 81


def test_missing_backbone_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    config = validate_config(
        {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {"dataset": "d"}}}
    )
    run = config["runs"]["r"]
    run["model"]["backbone_weights"] = str(tmp_path / "resnet50.pth")
    with pytest.raises(PipelineError, match=r"resnet50\.pth: backbone weights not found"):
        build_model(run["model"], num_classes=2, input_settings=run["input"])


def test_train_script_reports_bad_annotations_without_traceback(tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        [
            "--config",
            str(TESTS_DATA / "tiny.yaml"),
            "--run",
            "tiny",
            "--images",
            str(tmp_path),
            "--annotations",
            str(tmp_path / "missing.json"),
            "--out-dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.returncode == 2
    assert "missing.json: annotation file not found" in result.stderr
    assert "Traceback" not in result.stderr
