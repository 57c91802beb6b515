"""Training on the CPU: outputs, exact resume, the non-finite loss error, model building, a
data error that retries do not train into."""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from maskrcnn_pipeline.errors import DataError, PipelineError
from maskrcnn_pipeline.model import precision as precision_module
from maskrcnn_pipeline.model.build import build_model
from maskrcnn_pipeline.train.loop import Hook, StepResult, Trainer
from maskrcnn_pipeline.train.optimizer import IterationLR
from maskrcnn_pipeline.train.run import TrainingInterrupted, TrainPaths, train
from maskrcnn_pipeline.train.schedule import Schedule
from maskrcnn_pipeline.workflow.code_inputs import code_digest, train_code
from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.params import merge_operational, split_operational, train_settings
from tests.support.datasets import make_tiny_dataset
from tests.support.images import cut
from tests.support.paths import REPO, TESTS_DATA
from tests.support.workflow import run_script

#: Stands for the digest scripts/train.py computes of the training code.
CODE = "code-a"
_real_autocast = Trainer.autocast


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
    train(settings_of(tiny_config), paths(tiny_data, tmp_path), code_digest=CODE)
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["iteration"] == 4 and len(final["categories"]) == 4
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [2, 4]
    assert all(x["loss"] > 0 and x["images_per_s"] > 0 for x in lines)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert {"git", "packages", "hardware", "inputs", "settings"} <= set(provenance)
    assert provenance["precision"] == "fp32"


@pytest.mark.parametrize(("flags", "resolved"), [(set(), "fp32"), ({"amx_bf16"}, "bf16")])
def test_precision_auto_trains_in_what_the_cpu_runs_natively_and_records_it(
    tiny_config, tiny_data, tmp_path, monkeypatch, flags, resolved
) -> None:
    used: list[str] = []
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(
        Trainer, "autocast", lambda self: used.append(self.precision) or _real_autocast(self)
    )
    settings = settings_of(tiny_config, max_iter=2)
    settings["precision"] = "auto"
    train(settings, paths(tiny_data, tmp_path), code_digest=CODE)
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert (provenance["settings"]["precision"], provenance["precision"]) == ("auto", resolved)
    assert used and set(used) == {resolved}


def test_a_checkpoint_of_auto_precision_resumes_only_where_auto_resolves_the_same(
    tiny_config, tiny_data, tmp_path, monkeypatch, caplog
) -> None:
    """`precision: auto` is bf16 on one CPU and fp32 on another: what it resolved to is part
    of the checkpoint's identity, so a bf16 run is not continued in fp32."""
    settings = settings_of(tiny_config, max_iter=4)
    settings["precision"] = "auto"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    interrupted_run(settings, paths(tiny_data, tmp_path))
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset())
    started = StartedAt()
    with caplog.at_level(logging.WARNING, logger="maskrcnn_pipeline.train.run"):
        train(settings, paths(tiny_data, tmp_path), code_digest=CODE, hooks=[started])
    assert started.iteration == 0
    assert "written with other settings" in caplog.text


class StopAt(Hook):
    """Delivers a stop request during ``iteration``, as the SIGTERM handler would; the
    processes agree on it in the next iteration's collective and stop after that one."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if result.iteration == self.iteration:
            trainer.request_stop(signal.SIGTERM)


class StartedAt(Hook):
    """Records the iteration training starts from (after any resume)."""

    iteration: int | None = None

    def before_train(self, trainer: Trainer) -> None:
        self.iteration = trainer.iteration


def interrupted_run(settings: dict, run_paths: TrainPaths, code: str = CODE) -> None:
    """Train until the stop request of iteration 2 ends training after iteration 3."""
    with pytest.raises(TrainingInterrupted, match="after iteration 3"):
        train(settings, run_paths, code_digest=code, hooks=[StopAt(2)])


def test_resume_gives_the_same_weights_as_a_straight_run(
    tiny_config: dict, tiny_data: Path, tmp_path: Path
) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        straight = tmp_path / "straight"
        train(settings_of(tiny_config, max_iter=4), paths(tiny_data, straight), code_digest=CODE)
        resumed = tmp_path / "resumed"
        interrupted_run(settings_of(tiny_config, max_iter=4), paths(tiny_data, resumed))
        assert not (resumed / "model_final.pth").exists()
        started = StartedAt()
        train(
            settings_of(tiny_config, max_iter=4),
            paths(tiny_data, resumed),
            code_digest=CODE,
            hooks=[started],
        )
    finally:
        torch.use_deterministic_algorithms(False)
    assert started.iteration == 3
    a = torch.load(straight / "model_final.pth", weights_only=False)["model"]
    b = torch.load(resumed / "model_final.pth", weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [2, 4]


def test_a_checkpoint_holds_the_hooks_state_and_the_fingerprint_parts(
    tiny_config: dict, tiny_data: Path, tmp_path: Path
) -> None:
    interrupted_run(settings_of(tiny_config, max_iter=4), paths(tiny_data, tmp_path))
    state = torch.load(tmp_path / "checkpoints" / "model_0000003.pth", weights_only=False)
    assert state["iteration"] == 3
    assert state["hooks"]["MetricsWriter"]["elapsed"] > 0
    assert set(state["fingerprint"]) == {"settings", "data", "code"}
    assert state["fingerprint"]["code"] == CODE


def reserialised_annotations(data: Path, tmp_path: Path) -> Path:
    """The same dataset with its annotation file written differently (another sha256)."""
    copy_ = tmp_path / "data"
    shutil.copytree(data, copy_)
    annotations = copy_ / "annotations" / "train.json"
    annotations.write_text(json.dumps(json.loads(annotations.read_text()), indent=1))
    return copy_


@pytest.mark.parametrize("change", ["settings", "data", "code"])
def test_checkpoints_of_other_settings_data_or_code_are_moved_aside_not_resumed(
    tiny_config: dict,
    tiny_data: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    change: str,
) -> None:
    out = tmp_path / "out"
    interrupted_run(settings_of(tiny_config, max_iter=4), paths(tiny_data, out))
    solver = {"base_lr": 0.002} if change == "settings" else {}
    settings = settings_of(tiny_config, max_iter=4, **solver)
    data = reserialised_annotations(tiny_data, tmp_path) if change == "data" else tiny_data
    code = "code-b" if change == "code" else CODE
    started = StartedAt()
    with caplog.at_level(logging.WARNING, logger="maskrcnn_pipeline.train.run"):
        train(settings, paths(data, out), code_digest=code, hooks=[started])
    assert started.iteration == 0
    assert (out / "checkpoints.previous" / "model_0000003.pth").is_file()
    (message,) = [r.getMessage() for r in caplog.records if "moved to" in r.getMessage()]
    assert f"written with other {change}: moved to" in message
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [2, 4]


class _Counter(Hook):
    """A hook with resumable state: how many steps it saw."""

    def __init__(self) -> None:
        self.steps = 0

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = state["steps"]


class _LinearModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def forward(self, images, targets):
        return {"loss_a": self.layer(torch.stack(images).mean((2, 3))).pow(2).mean()}


def _linear_trainer(seed: int) -> Trainer:
    torch.manual_seed(seed)
    model = _LinearModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    solver = {
        "max_iter": 4,
        "scheduler": "multistep",
        "steps": [2],
        "gamma": 0.1,
        "final_lr_factor": 0.0,
        "warmup_iters": 0,
        "warmup_factor": 1.0,
        "warmup_method": "linear",
    }
    batch = ([torch.full((3, 4, 4), 200, dtype=torch.uint8)], [{"labels": torch.zeros(1)}])
    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=IterationLR(optimizer, Schedule.from_settings(solver)),
        batches=iter([batch] * 4),
        device=torch.device("cpu"),
        max_iter=4,
        hooks=[_Counter()],
    )


def test_trainer_state_dict_round_trips_model_solver_rng_and_hook_state() -> None:
    trained = _linear_trainer(seed=0)
    trained.max_iter = 2
    trained.run()
    state = trained.state_dict()
    assert state["hooks"] == {"_Counter": {"steps": 2}}
    random_after = torch.rand(1)
    fresh = _linear_trainer(seed=1)
    fresh.load_state_dict(state)
    assert fresh.iteration == 2 and fresh.hooks[0].steps == 2
    assert torch.equal(fresh.module.layer.weight, trained.module.layer.weight)
    assert fresh.scheduler.current_lr() == trained.scheduler.current_lr()
    assert fresh.optimizer.state_dict()["state"].keys() == {0, 1}  # momentum restored
    assert torch.equal(torch.rand(1), random_after)  # the RNG continues the saved stream


class Published(Hook):
    """Records what hooks publish for the metrics log."""

    def __init__(self) -> None:
        self.values: list[tuple[int, Mapping[str, Any]]] = []

    def on_publish(self, trainer: Trainer, iteration: int, values: Mapping[str, Any]) -> None:
        self.values.append((iteration, values))


def test_other_operational_settings_resume_the_checkpoint(
    tiny_config: dict, tiny_data: Path, tmp_path: Path
) -> None:
    settings = settings_of(tiny_config, max_iter=4)
    params, operational = split_operational(settings, "train")
    with pytest.raises(TrainingInterrupted, match="after iteration 3"):
        train(
            settings,
            paths(tiny_data, tmp_path),
            code_digest=CODE,
            resume_settings=params,
            hooks=[StopAt(2)],
        )
    operational.update(threads=2, log_period=1, checkpoint={"period": 3, "keep": 1})
    other = merge_operational(params, operational)
    started = StartedAt()
    train(
        other, paths(tiny_data, tmp_path), code_digest=CODE, resume_settings=params, hooks=[started]
    )
    assert started.iteration == 3
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
    published = Published()
    train(settings, run_paths, code_digest=CODE, hooks=[published])
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evaluations = [x for x in lines if "eval" in x]
    assert [x["iteration"] for x in evaluations] == [2]
    assert published.values == [(2, {"eval": evaluations[0]["eval"]})]
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


def test_the_training_code_is_the_train_rules_closure_with_the_evaluation_hook_when_used() -> None:
    without = train_code(REPO, {"eval_period": 0})
    with_eval = train_code(REPO, {"eval_period": 2})
    assert without[0] == "scripts/train.py"
    assert "maskrcnn_pipeline/train/run.py" in without
    assert "maskrcnn_pipeline/workflow/code_inputs.py" in without  # it computes the digest
    assert "maskrcnn_pipeline/train/evaluation_hook.py" not in without
    assert "maskrcnn_pipeline/train/evaluation_hook.py" in with_eval
    assert code_digest(REPO, without) != code_digest(REPO, with_eval)


def test_the_code_digest_changes_with_a_file_of_the_closure_only(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "train.py").write_text("import maskrcnn_pipeline.used\n")
    package = tmp_path / "maskrcnn_pipeline"
    package.mkdir()
    for name in ("__init__.py", "used.py", "unused.py"):
        (package / name).write_text("")
    files = train_code(tmp_path, {"eval_period": 0})
    before = code_digest(tmp_path, files)
    (package / "unused.py").write_text("x = 1\n")
    assert code_digest(tmp_path, train_code(tmp_path, {"eval_period": 0})) == before
    (package / "used.py").write_text("x = 1\n")
    assert code_digest(tmp_path, train_code(tmp_path, {"eval_period": 0})) != before


def test_a_data_error_stops_training_once_and_a_retry_at_once(
    tiny_config: dict, tiny_data: Path, tmp_path: Path
) -> None:
    """An unreadable image met in a DataLoader worker: the file is named, without torch's
    wrapping; the train rule's retry (--attempt 2) stops before training; a new run
    (--attempt 1) trains again."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for image in (data / "train").iterdir():  # the first batch meets one, whichever it is
        cut(image, 200)
    out = tmp_path / "out"
    settings = settings_of(tiny_config)
    settings["dataloader"]["workers"] = 1
    with pytest.raises(DataError) as caught:
        train(settings, paths(data, out), code_digest=CODE)
    message = str(caught.value)
    assert (
        f"{data / 'train'}/" in message and "cannot decode image (the file is truncated" in message
    )
    assert "DataLoader worker" not in message and "Traceback" not in message
    assert not multiprocessing.active_children(), "a worker left behind hangs the exit"
    recorded = json.loads((out / "data_error.json").read_text())
    assert recorded["file"] == caught.value.path and recorded["message"] in message

    def train_script(attempt: int) -> subprocess.CompletedProcess[str]:
        return run_script(
            "train.py",
            [
                *("--config", TESTS_DATA / "tiny.yaml", "--run", "tiny"),
                *("--images", data / "train", "--annotations", data / "annotations/train.json"),
                *("--out-dir", out, "--attempt", attempt),
            ],
        )

    retry = train_script(2)
    assert retry.returncode == 2 and "attempt 2 not started" in retry.stderr
    assert recorded["message"] in retry.stderr and "training images" not in retry.stderr
    assert "Traceback" not in retry.stderr
    rerun = train_script(1)
    assert rerun.returncode == 2 and "not started" not in rerun.stderr
    assert "training images" in rerun.stderr and "cannot decode image" in rerun.stderr
