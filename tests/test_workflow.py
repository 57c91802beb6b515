"""End-to-end: the real snakemake CLI on the tiny config, and what reruns after a change."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from maskrcnn_pipeline.evaluation import STAT_NAMES
from tests.support import reruns
from tests.support.paths import TESTS_DATA
from tests.support.workflow import copy_workflow, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow

#: What the tiny pipeline reruns, by change (tests/data/reruns.yaml, also the README's table).
RERUNS = reruns.load()


def edit_config(workdir: Path, edit) -> None:
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline, with the rerun table's inference entry, run once to completion
    (shared: every rerun test copies it)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("finished"))
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    config["inference"] = RERUNS["inference"]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(workdir)
    return workdir


@pytest.fixture
def done(finished: Path, tmp_path: Path) -> Path:
    """A private copy of the finished workflow, timestamps kept (a rerun test may edit it)."""
    workdir = tmp_path / "wf"
    shutil.copytree(finished, workdir, symlinks=True)
    return workdir


def test_pipeline_writes_every_output(finished: Path) -> None:
    run = finished / "results" / "tiny"
    checkpoint = __import__("torch").load(run / "train" / "model_final.pth", weights_only=False)
    assert [c["name"] for c in checkpoint["categories"]] == ["circle", "square", "triangle", "star"]
    lines = [
        json.loads(line) for line in (run / "train" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [line["iteration"] for line in lines] == [2, 4]
    for key in ("loss", "loss_classifier", "loss_box_reg", "loss_mask", "lr", "images_per_s"):
        assert all(key in line for line in lines)
    predictions = json.loads((run / "eval" / "val" / "predictions.json").read_text())
    assert predictions and {"bbox", "segmentation", "score"} <= set(predictions[0])
    metrics = json.loads((run / "eval" / "val" / "metrics.json").read_text())
    assert set(metrics) == {"bbox", "segm"}
    assert all(tuple(metrics[t]) == tuple(STAT_NAMES) for t in metrics)
    for name in ("summary.md", "metrics.csv", "losses.png", "lr.png", "predictions.png"):
        assert (run / "report" / name).stat().st_size > 0
    provenance = json.loads((run / "train" / "provenance.json").read_text())
    assert provenance["settings"]["solver"]["max_iter"] == 4
    assert (finished / "results" / "logs" / "train" / "tiny.log").is_file()
    assert (finished / "results" / "benchmarks" / "train" / "tiny.tsv").is_file()


def test_nothing_reruns_when_up_to_date(done: Path) -> None:
    assert planned_jobs(done) == set()


@pytest.mark.parametrize("row", RERUNS["rows"], ids=reruns.row_id)
def test_a_change_reruns_what_the_rerun_table_says(done: Path, row: dict) -> None:
    """Each row of the README's "What triggers a rerun" table, as a real dry run."""
    reruns.apply(row, done)
    assert planned_jobs(done) == set(row["reruns"])


def test_training_change_really_reruns_without_touching_the_dataset(done: Path) -> None:
    dataset_json = done / "data" / "tiny" / "annotations" / "train.json"
    before = dataset_json.stat().st_mtime_ns
    edit_config(done, lambda c: c["runs"]["tiny"]["solver"].update(max_iter=2))
    result = run_snakemake(done)
    ran = set(re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, re.MULTILINE))
    after_train = {
        "train",
        "predict",
        "evaluate",
        "report",
        "compare",
        "infer",
        "overlay_inference",
    }
    assert ran - {"all"} == after_train
    assert dataset_json.stat().st_mtime_ns == before
    lines = (done / "results" / "tiny" / "train" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["iteration"] == 2


def test_bad_config_stops_before_any_job_with_the_key_path(workflow: Path) -> None:
    edit_config(workflow, lambda c: c["runs"]["tiny"]["solver"].update(bogus=1, optimizer="adam"))
    result = run_snakemake(workflow, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "runs.tiny.solver: unknown key(s) 'bogus'" in output
    assert (
        "runs.tiny.solver.optimizer: 'adam' is not allowed; choose one of ['sgd', 'adamw']"
        in output
    )
    assert not (workflow / "results").exists()
    assert not (workflow / "data").exists()


def test_workflow_passes_snakemake_lint(workflow: Path) -> None:
    run_snakemake(workflow, "--lint")
