"""Tests of the cross-run comparison (maskrcnn_pipeline.report.comparison, scripts/compare.py).

Inputs are written in the formats training and evaluation produce (the writers of
test_report), so no data, GPU or torch is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.metrics_log import read_metrics_log, training_summary
from maskrcnn_pipeline.report.comparison import (
    Reference,
    RunInputs,
    build_comparison,
    comparison_table,
    read_runs,
)
from maskrcnn_pipeline.report.comparison_figures import ap_history_figure, stats_bars_figure
from maskrcnn_pipeline.workflow.schema import schema_default
from tests.support.report import COMPARISON_FIGURES, COMPARISON_TABLES, PNG_SIGNATURE, html_tables
from tests.support.report_inputs import coco_stats, write_json, write_metrics_log
from tests.support.workflow import run_script

NVIDIA = schema_default("report", "references")


def make_run(root: Path, name: str, dataset: str, offset: float, **log_options: Any) -> RunInputs:
    """A run's metrics.json and metrics.jsonl, with the info the workflow passes."""
    root.mkdir(parents=True, exist_ok=True)
    stats = {"bbox": coco_stats(offset), "segm": coco_stats(offset / 2)}
    return RunInputs(
        name=name,
        metrics=write_json(root / f"{name}.metrics.json", stats),
        metrics_log=write_metrics_log(root / f"{name}.metrics.jsonl", **log_options),
        info={
            "dataset": dataset,
            "eval_split": "val",
            "engine": "torchvision",
            "gpus": 8,
            "precision": "fp16",
        },
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[RunInputs]:
    root = tmp_path_factory.mktemp("runs")
    return [
        make_run(root, "r50_fpn_1x", "coco2017", 0.2),
        make_run(root, "r50_bs64", "coco2017", 0.25, with_eval=False),
        make_run(root, "shapes_demo", "shapes", 0.5),
    ]


@pytest.fixture(scope="module")
def compared(runs: list[RunInputs], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("comparison")
    build_comparison(out_dir=out_dir, runs=runs, references=NVIDIA)
    return out_dir


def reference_labels(figure: Any) -> list[str]:
    return [
        line.get_label() for ax in figure.axes for line in ax.lines if "NVIDIA" in line.get_label()
    ]


def test_table_has_one_row_per_run_with_its_numbers(compared: Path, runs: list[RunInputs]) -> None:
    table = pd.read_csv(compared / "comparison.csv", index_col="run")
    assert list(table.index) == [run.name for run in runs]
    for run in runs:
        metrics = json.loads(run.metrics.read_text())
        for iou_type in ("bbox", "segm"):
            for stat in ("AP", "AP50", "AP75", "APm", "APl"):
                expected = metrics[iou_type][stat]
                assert table.at[run.name, f"{iou_type}_{stat}"] == pytest.approx(expected)
        summary = training_summary(read_metrics_log(run.metrics_log))
        assert table.at[run.name, "training_seconds"] == pytest.approx(summary["seconds"])
        assert table.at[run.name, "images_per_s"] == pytest.approx(summary["images_per_s"])
        assert table.at[run.name, "gpus"] == 8
        assert table.at[run.name, "dataset"] == run.info["dataset"]


def test_writes_every_figure_and_table(compared: Path) -> None:
    assert {p.name for p in compared.iterdir()} == COMPARISON_FIGURES | COMPARISON_TABLES
    for name in COMPARISON_FIGURES:
        data = (compared / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, name
    page = (compared / "comparison.md").read_text()
    assert "Nothing was skipped." in page
    for name in COMPARISON_FIGURES:
        assert f"]({name})" in page


def test_html_table_is_readable_and_complete(compared: Path, runs: list[RunInputs]) -> None:
    box, mask, training = html_tables((compared / "comparison.html").read_text())
    assert box[0] == ["run", "dataset", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert [row[0] for row in box[1:]] == [run.name for run in runs]
    assert box[1][2] == f"{coco_stats(0.2)['AP']:.3f}" and box[1][5] == "n/a"
    assert mask[1][2] == f"{coco_stats(0.1)['AP']:.3f}"
    assert training[0] == [
        "run",
        "engine",
        "GPUs",
        "precision",
        "iterations",
        "training time",
        "images / s",
    ]
    assert training[1][1:6] == ["torchvision", "8", "fp16", "960", "12 min 48 s"]


def test_nvidia_reference_lines_only_for_coco2017_runs(
    compared: Path, runs: list[RunInputs]
) -> None:
    references = [Reference.from_config(entry, "test") for entry in NVIDIA]
    results = read_runs(runs)
    table = comparison_table(results)
    figure = stats_bars_figure(table, ("AP", "AP50", "AP75"), references)
    assert reference_labels(figure) == [
        "NVIDIA R-50-FPN 1x (published): 0.3763",
        "NVIDIA R-50-FPN 1x (published): 0.3417",
    ]
    lines = [line for ax in figure.axes for line in ax.lines]
    assert [line.get_ydata()[0] for line in lines] == [0.3763, 0.3417]
    assert len(reference_labels(ap_history_figure(results, references))) == 2
    assert "Reference line: NVIDIA" in (compared / "comparison.md").read_text()

    shapes_only = read_runs([runs[2]])
    assert not any(r.applies_to(shapes_only) for r in references)


def test_no_reference_lines_without_a_coco2017_run(runs: list[RunInputs], tmp_path: Path) -> None:
    build_comparison(out_dir=tmp_path, runs=[runs[2]], references=NVIDIA)
    page = (tmp_path / "comparison.md").read_text()
    assert "Not drawn: NVIDIA R-50-FPN 1x (published)" in page
    assert "no compared run uses dataset coco2017" in page
    assert len(pd.read_csv(tmp_path / "comparison.csv")) == 1


def test_final_ap_is_shown_for_runs_without_periodic_evaluation(runs: list[RunInputs]) -> None:
    results = read_runs(runs)
    figure = ap_history_figure(results, ())
    bbox = figure.axes[0]
    stars = [line for line in bbox.lines if line.get_marker() == "*"]
    assert len(stars) == 3, "every run ends with its final AP"
    assert stars[1].get_xydata().tolist() == [[960.0, coco_stats(0.25)["AP"]]]


def test_placeholders_for_figures_without_data(tmp_path: Path) -> None:
    run = make_run(tmp_path / "in", "bare", "shapes", 0.1, with_eval=False)
    log = run.metrics_log
    # a log with losses only: no throughput, no time
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text(
        "".join(
            json.dumps({k: v for k, v in line.items() if k not in ("seconds", "images_per_s")})
            + "\n"
            for line in lines
        )
    )
    written = build_comparison(out_dir=tmp_path / "out", runs=[run], placeholders=True)
    assert {p.name for p in written} == COMPARISON_FIGURES | COMPARISON_TABLES
    page = (tmp_path / "out" / "comparison.md").read_text()
    assert "- `speed.png`: no run logged 'seconds' or 'images_per_s'" in page
    without = build_comparison(out_dir=tmp_path / "out2", runs=[run])
    assert "speed.png" not in {p.name for p in without}


def test_bad_inputs_are_named(runs: list[RunInputs], tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="more than once: r50_fpn_1x"):
        build_comparison(out_dir=tmp_path, runs=[runs[0], runs[0]])
    with pytest.raises(PipelineError, match="no runs to compare"):
        build_comparison(out_dir=tmp_path, runs=[])
    with pytest.raises(PipelineError, match=r"references\[0\]: a reference needs label"):
        build_comparison(out_dir=tmp_path, runs=runs, references=[{"bbox": 0.3}])
    broken = RunInputs("x", tmp_path / "missing.json", runs[0].metrics_log)
    with pytest.raises(PipelineError, match=r"missing\.json: file not found"):
        build_comparison(out_dir=tmp_path, runs=[broken])


# --- the command line -------------------------------------------------------------------------


def test_cli_compares_runs_with_schema_references(runs: list[RunInputs], tmp_path: Path) -> None:
    args = [
        arg for run in runs for arg in ("--run", run.name, str(run.metrics), str(run.metrics_log))
    ]
    info = {run.name: dict(run.info) for run in runs}
    result = run_script(
        "compare.py", ["--out-dir", str(tmp_path), *args, "--run-info", json.dumps(info)]
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in tmp_path.iterdir()} == COMPARISON_FIGURES | COMPARISON_TABLES
    assert "Reference line: NVIDIA" in (tmp_path / "comparison.md").read_text()
    assert len(pd.read_csv(tmp_path / "comparison.csv")) == 3


def test_cli_help_and_errors(runs: list[RunInputs], tmp_path: Path) -> None:
    result = run_script("compare.py", ["--help"])
    assert result.returncode == 0
    for option in ("--out-dir", "--run", "--run-info", "--references", "--placeholders"):
        assert option in result.stdout, option
    run = runs[0]
    one_run = ["--run", run.name, str(run.metrics), str(run.metrics_log)]
    result = run_script("compare.py", ["--out-dir", str(tmp_path), *one_run, "--run-info", "[1]"])
    assert result.returncode == 2
    assert "--run-info: must be a JSON dict" in result.stderr
    assert "Traceback" not in result.stderr
