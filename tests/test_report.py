"""Tests of the per-run report (maskrcnn_pipeline.report and scripts/report.py).

Every input is generated in tmp_path in the formats the training and evaluation stages write,
so these tests need no data, no GPU and no torch.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.report.category_ap import extremes
from maskrcnn_pipeline.report.figures import save_figure
from maskrcnn_pipeline.report.predictions_figure import example_predictions_figure, select_examples
from maskrcnn_pipeline.report.run_report import build_run_report
from maskrcnn_pipeline.report.summary import format_duration
from maskrcnn_pipeline.report.tables import COCO_STATS, read_coco_metrics
from tests.support.report import (
    PNG_SIGNATURE,
    RUN_REPORT_FIGURES,
    RUN_REPORT_TABLES,
    html_tables,
)
from tests.support.report_inputs import (
    coco_stats,
    make_inputs,
    predictions_for,
    write_json,
    write_metrics_log,
)
from tests.support.workflow import run_script


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def full_report(
    inputs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Path]]:
    out_dir = tmp_path_factory.mktemp("report")
    return out_dir, build_run_report(run_name="r50_fpn_1x-test", out_dir=out_dir, **inputs)


def predictions_png(inputs: dict[str, Any], out_dir: Path, **changes: Any) -> bytes:
    """predictions.png of a report with only what that figure needs, for quick comparisons."""
    kwargs = inputs | {"per_category_csv": None, "pr_curves_csv": None} | changes
    build_run_report(run_name="p", out_dir=out_dir, **kwargs)
    return (out_dir / "predictions.png").read_bytes()


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= 300, f"{path} is only {image.size}"


# --- the full report --------------------------------------------------------------------------


def test_writes_every_figure_table_and_summary(full_report: tuple[Path, list[Path]]) -> None:
    out_dir, written = full_report
    names = {p.name for p in written}
    assert names == RUN_REPORT_FIGURES | RUN_REPORT_TABLES
    assert written[-1].name == "summary.md"
    assert {p.name for p in out_dir.iterdir()} == names, "no temporary file may be left"
    for name in RUN_REPORT_FIGURES:
        assert_valid_png(out_dir / name)


def test_summary_has_all_stats_for_both_iou_types(full_report: tuple[Path, list[Path]]) -> None:
    out_dir, _ = full_report
    summary = (out_dir / "summary.md").read_text()
    assert "r50_fpn_1x-test" in summary
    bbox, segm = coco_stats(0.0), coco_stats(0.01)
    assert "| stat | bbox | segm |" in summary
    for stat in COCO_STATS:
        cells = [
            "n/a" if bbox[stat] < 0 else f"{bbox[stat]:.3f}",
            "n/a" if segm[stat] < 0 else f"{segm[stat]:.3f}",
        ]
        assert f"| {stat} | {cells[0]} | {cells[1]} |" in summary, stat
    for name in RUN_REPORT_FIGURES:
        assert f"]({name})" in summary, name
    assert "Nothing was skipped." in summary
    assert "| iterations | 960 |" in summary
    assert "12 min 48 s" in summary  # 960 iterations * 0.8 s
    assert "| loss_mask |" in summary
    assert "| config.solver.lr | 0.02 |" in summary
    assert "8x H100 \\| NVLink" in summary, "a pipe in a value must not break the table"


def test_metrics_csv_has_one_row_per_iou_type(full_report: tuple[Path, list[Path]]) -> None:
    out_dir, _ = full_report
    frame = pd.read_csv(out_dir / "metrics.csv")
    assert frame.shape == (2, 13)
    assert list(frame.columns) == ["iou_type", *COCO_STATS]
    assert list(frame["iou_type"]) == ["bbox", "segm"]
    assert frame.loc[1, "AP75"] == pytest.approx(coco_stats(0.01)["AP75"])


# --- inputs that are missing or wrong ---------------------------------------------------------


def test_missing_optional_inputs_skip_their_figures(inputs: dict[str, Any], tmp_path: Path) -> None:
    log = write_metrics_log(tmp_path / "metrics.jsonl", with_eval=False, with_data_time=False)
    out_dir = tmp_path / "report"
    out_dir.mkdir()
    (out_dir / "pr_curves.png").write_bytes(b"stale")
    written = build_run_report(
        run_name="bare",
        out_dir=out_dir,
        metrics_log=log,
        metrics=inputs["metrics"],
        predictions=None,
        annotations=inputs["annotations"],
        images=inputs["images"],
        per_category_csv=tmp_path / "absent.csv",
    )
    names = {p.name for p in written}
    assert names == {"losses.png", "lr.png", "throughput.png"} | RUN_REPORT_TABLES
    assert not (out_dir / "pr_curves.png").exists(), "a stale skipped figure must go"
    summary = (out_dir / "summary.md").read_text()
    skipped = summary.split("## Skipped")[1].split("##")[0]
    assert "`ap_vs_iteration.png`: metrics.jsonl has no eval lines" in skipped
    assert "`per_category_ap.png`: per_category_csv" in skipped and "does not exist" in skipped
    assert "`pr_curves.png`: pr_curves_csv not given" in skipped
    assert "`predictions.png`: predictions not given" in skipped
    assert "`provenance section`" in skipped
    assert "| data time, s / iteration (median) | not logged |" in summary


def test_segm_may_be_absent(inputs: dict[str, Any], tmp_path: Path) -> None:
    metrics = write_json(tmp_path / "metrics.json", {"bbox": coco_stats(0.0)})
    kwargs = inputs | {"metrics": metrics, "predictions": None}
    build_run_report(run_name="box-only", out_dir=tmp_path / "out", **kwargs)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| stat | bbox |" in summary
    assert "Not in metrics.json: segm." in summary
    assert pd.read_csv(tmp_path / "out" / "metrics.csv").shape == (1, 13)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"loss": 1.0}', "'iteration' must be an integer"),
        ('{"iteration": 7, "loss": "high"}', "'loss' must be a number"),
        ('{"iteration": 7, "eval": {"bbox": 0.3}}', "'eval.bbox' must map"),
    ],
)
def test_malformed_log_line_names_file_and_line(
    inputs: dict[str, Any], tmp_path: Path, bad_line: str, message: str
) -> None:
    lines = inputs["metrics_log"].read_text().splitlines()
    lines[6] = bad_line
    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(PipelineError, match=r"metrics\.jsonl, line 7: ") as error:
        build_run_report(run_name="x", out_dir=tmp_path / "out", **inputs | {"metrics_log": log})
    assert message in str(error.value)
    assert not (tmp_path / "out").exists(), "nothing is written before the inputs are read"


def test_metrics_json_without_a_stat_names_it(tmp_path: Path) -> None:
    stats = coco_stats(0.0)
    del stats["AR100"]
    path = write_json(tmp_path / "metrics.json", {"segm": stats})
    with pytest.raises(PipelineError, match=r"metrics\.json: 'segm' lacks AR100"):
        read_coco_metrics(path)


def test_mask_of_another_size_is_an_error(inputs: dict[str, Any], tmp_path: Path) -> None:
    results = predictions_for(inputs["annotations"])
    small = np.zeros((10, 10), dtype=np.uint8, order="F")
    results[0]["segmentation"]["size"] = [10, 10]
    results[0]["segmentation"]["counts"] = mask_utils.encode(small)["counts"].decode()
    predictions = write_json(tmp_path / "predictions.json", results)
    with pytest.raises(PipelineError, match="mask is 10x10 but the image is 120x160"):
        predictions_png(inputs, tmp_path / "out", predictions=predictions)


# --- the predictions figure -------------------------------------------------------------------


def test_example_sample_is_fixed_by_image_id() -> None:
    ids = list(range(1000, 1100))
    shuffled = random.Random(4).sample(ids, len(ids))
    sample = select_examples(ids, 6)
    assert sample == select_examples(shuffled, 6) == sorted(sample)
    assert len(sample) == 6 and sample != ids[:6], "the sample should spread over the set"
    assert set(sample) <= set(select_examples(ids + list(range(5000, 5010)), 16))


def test_predictions_figure_is_deterministic_and_follows_predictions(
    inputs: dict[str, Any], full_report: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    first = (full_report[0] / "predictions.png").read_bytes()
    assert predictions_png(inputs, tmp_path / "again") == first, "same inputs, same image"

    def draw(predictions: Path, score_threshold: float = 0.5) -> bytes:
        figure = example_predictions_figure(
            predictions=predictions,
            annotations=inputs["annotations"],
            images=inputs["images"],
            num_examples=6,
            score_threshold=score_threshold,
        )
        return save_figure(figure, tmp_path / "direct.png").read_bytes()

    assert draw(inputs["predictions"]) == first, "the library call draws what the report does"
    shifted = write_json(tmp_path / "shifted.json", predictions_for(inputs["annotations"], shift=6))
    assert draw(shifted) != first
    assert draw(inputs["predictions"], score_threshold=0.1) != first


# --- the command line -------------------------------------------------------------------------


def cli_args(inputs: dict[str, Any]) -> list[str]:
    return [
        arg for key, value in inputs.items() for arg in (f"--{key.replace('_', '-')}", str(value))
    ]


def test_cli_writes_the_report(inputs: dict[str, Any], tmp_path: Path) -> None:
    out_dir = tmp_path / "cli"
    result = run_script(
        "report.py",
        [
            "--run-name",
            "cli-run",
            "--out-dir",
            str(out_dir),
            *cli_args(inputs),
            "--num-examples",
            "3",
            "--score-threshold",
            "0.7",
        ],
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out_dir.iterdir()} == RUN_REPORT_FIGURES | RUN_REPORT_TABLES
    assert "cli-run" in (out_dir / "summary.md").read_text()


def test_cli_help_documents_every_option() -> None:
    result = run_script("report.py", ["--help"])
    assert result.returncode == 0
    for option in (
        "--run-name",
        "--out-dir",
        "--metrics-log",
        "--metrics",
        "--predictions",
        "--annotations",
        "--images",
        "--per-category-csv",
        "--pr-curves-csv",
        "--provenance",
        "--num-examples",
        "--score-threshold",
    ):
        assert option in result.stdout, option


def test_cli_reports_errors_without_traceback(inputs: dict[str, Any], tmp_path: Path) -> None:
    broken = tmp_path / "metrics.json"
    broken.write_text("{")
    args = cli_args(inputs | {"metrics": broken})
    result = run_script("report.py", ["--run-name", "x", "--out-dir", tmp_path / "out", *args])
    assert result.returncode == 2
    assert "metrics.json: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_format_duration() -> None:
    assert format_duration(3725) == "1 h 02 min 05 s"
    assert format_duration(768) == "12 min 48 s"
    assert format_duration(9.5) == "9.5 s"


def test_per_category_extremes_split_only_when_there_are_many() -> None:
    frame = pd.DataFrame(
        {
            "iou_type": "bbox",
            "category_name": [f"c{i}" for i in range(25)],
            "AP": [i / 25 for i in range(25)],
        }
    )
    shown = extremes(frame, 10)
    assert list(shown["rank"]) == ["best"] * 10 + ["worst"] * 10
    assert shown["AP"].iloc[0] == pytest.approx(24 / 25) and shown["AP"].iloc[-1] == 0
    assert set(extremes(frame.head(5), 10)["rank"]) == {"all"}


# --- what the workflow relies on: placeholders, metrics.html, AP during training -------------


def test_placeholders_stand_in_for_skipped_figures(inputs: dict[str, Any], tmp_path: Path) -> None:
    log = write_metrics_log(tmp_path / "metrics.jsonl", with_eval=False)
    out_dir = tmp_path / "report"
    written = build_run_report(
        run_name="no-eval",
        out_dir=out_dir,
        **inputs | {"metrics_log": log, "pr_curves_csv": None},
        placeholders=True,
    )
    assert {p.name for p in written} == RUN_REPORT_FIGURES | RUN_REPORT_TABLES
    placeholders = {"ap_vs_iteration.png", "pr_curves.png"}
    for name in RUN_REPORT_FIGURES - placeholders:
        assert_valid_png(out_dir / name)
    for name in placeholders:
        data = (out_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 3000, name
    summary = (out_dir / "summary.md").read_text()
    figures = summary.split("## Figures")[1].split("## Skipped")[0]
    assert "(ap_vs_iteration.png)" not in figures, "a placeholder is not listed as a figure"
    assert "(pr_curves.png)" not in figures
    skipped = summary.split("## Skipped")[1].split("##")[0]
    assert "no periodic evaluation" in skipped and "pr_curves_csv not given" in skipped
    assert "This run had no periodic evaluation" in summary.split("## AP during training")[1]


def test_ap_during_training_section_lists_each_evaluation(
    full_report: tuple[Path, list[Path]],
) -> None:
    summary = (full_report[0] / "summary.md").read_text()
    section = summary.split("## AP during training")[1].split("##")[0]
    assert "2 periodic evaluation(s)" in section
    assert "| iteration | bbox AP | segm AP |" in section
    assert "| 480 | 0.160 | 0.160 |" in section and "| 960 | 0.320 | 0.320 |" in section


def test_metrics_html_shows_the_stats(full_report: tuple[Path, list[Path]]) -> None:
    page = (full_report[0] / "metrics.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "r50_fpn_1x-test" in page
    (table,) = html_tables(page)
    assert table[0] == ["stat", "bbox", "segm"]
    assert [row[0] for row in table[1:]] == list(COCO_STATS)
    rows = {row[0]: row[1:] for row in table[1:]}
    assert rows["AP75"][1] == f"{coco_stats(0.01)['AP75']:.3f}"
    assert rows["APs"][0] == "n/a"


def test_long_provenance_groups_are_collapsed(inputs: dict[str, Any], tmp_path: Path) -> None:
    provenance = {
        "git": {"commit": "abc", "dirty": False},
        "container": {"image": "maskrcnn.sif", "digest": "sha256:feed"},
        "settings": {f"key{i}": i for i in range(30)},
    }
    path = write_json(tmp_path / "provenance.json", provenance)
    build_run_report(
        run_name="p", out_dir=tmp_path / "out", **inputs | {"provenance": path, "predictions": None}
    )
    section = (tmp_path / "out" / "summary.md").read_text().split("## Provenance")[1]
    head, details = section.split("<details>", 1)
    assert "| container.digest | sha256:feed |" in head and "| git.commit | abc |" in head
    assert "settings (30 values)" in details and "| settings.key29 | 29 |" in details
    inputs_section = section.split("## Inputs")[1]
    assert f"(sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})" in inputs_section
