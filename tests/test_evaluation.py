"""Tests for maskrcnn_pipeline.evaluation and scripts/evaluate.py.

The oracle is a plain pycocotools COCOeval run written out below, the way a user would
call it, so that the project's numbers are checked against the reference implementation
rather than against themselves.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.evaluation import (
    BACKENDS,
    STAT_NAMES,
    EvaluationResult,
    evaluate_coco,
    mean_category_ap,
    write_metrics,
    write_per_category_csv,
    write_pr_curves_csv,
)
from tests.support.fake_coco import (
    detections_from_ground_truth,
    encode_polygons,
    make_detections,
    make_ground_truth,
    write_fake_coco,
)
from tests.support.workflow import run_script

TOLERANCE = 1e-9


def pycocotools_reference(
    annotations: Path, results: Path, iou_type: str, *, strip_bbox: bool = True
) -> dict[str, float]:
    """The 12 stats of a direct pycocotools run (segm: detectron2's bbox stripping)."""
    gt = COCO(str(annotations))
    detections = json.loads(results.read_text())
    if iou_type == "segm" and strip_bbox:
        for detection in detections:
            detection.pop("bbox", None)
    evaluator = COCOeval(gt, gt.loadRes(detections), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return dict(zip(STAT_NAMES, evaluator.stats.tolist(), strict=True))


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def box(polygon: list[float]) -> list[float]:
    xs, ys = polygon[0::2], polygon[1::2]
    return [float(min(xs)), float(min(ys)), float(max(xs) - min(xs)), float(max(ys) - min(ys))]


def assert_stats_close(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert list(actual) == list(STAT_NAMES)
    for name in STAT_NAMES:
        assert actual[name] == pytest.approx(expected[name], abs=TOLERANCE), name


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """300 images, 6 categories, polygons + crowd RLE; 50 detections per image with masks."""
    gt, results = write_fake_coco(
        tmp_path_factory.mktemp("coco"), num_images=300, num_categories=6, detections_per_image=50
    )
    assert any(ann["iscrowd"] for ann in json.loads(gt.read_text())["annotations"])
    return gt, results


@pytest.fixture(scope="module")
def evaluated(coco_files: tuple[Path, Path]) -> dict[str, EvaluationResult]:
    return {backend: evaluate_coco(*coco_files, backend=backend) for backend in BACKENDS}


@pytest.fixture(scope="module")
def reference(coco_files: tuple[Path, Path]) -> dict[str, dict[str, float]]:
    return {iou_type: pycocotools_reference(*coco_files, iou_type) for iou_type in ("bbox", "segm")}


@pytest.fixture
def small_files(tmp_path: Path) -> tuple[Path, Path]:
    return write_fake_coco(tmp_path, num_images=20, num_categories=3, detections_per_image=10)


# --- agreement with the reference ---------------------------------------------------------


def test_backends_agree(evaluated: dict[str, EvaluationResult]) -> None:
    faster, plain = evaluated["faster_coco_eval"], evaluated["pycocotools"]
    assert list(faster.stats) == list(plain.stats) == ["bbox", "segm"]
    for iou_type in ("bbox", "segm"):
        assert_stats_close(faster.stats[iou_type], plain.stats[iou_type])
    for attribute in ("category_id", "AP", "AP50", "AP75"):
        values = [getattr(row, attribute) for row in faster.per_category]
        expected = [getattr(row, attribute) for row in plain.per_category]
        assert values == pytest.approx(expected, abs=TOLERANCE)
    for ours, theirs in zip(faster.pr_curves, plain.pr_curves, strict=True):
        assert ours.precision == pytest.approx(theirs.precision, abs=TOLERANCE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_matches_plain_pycocotools(
    evaluated: dict[str, EvaluationResult],
    reference: dict[str, dict[str, float]],
    backend: str,
    iou_type: str,
) -> None:
    stats = evaluated[backend].stats[iou_type]
    assert 0.05 < stats["AP"] < 0.95  # a non-trivial test set
    assert_stats_close(stats, reference[iou_type])


def test_segm_stats_use_mask_area_not_box_area(tmp_path: Path) -> None:
    """A thin diagonal false positive: small mask (area ~320) but a medium box (~3200).

    Kept, the box would put the false positive in the medium range (APm < 1, APs = 1);
    stripped, it lands in the small range. We must match the stripped reference.
    """
    height = width = 200
    small, medium = [10, 10, 30, 10, 30, 30, 10, 30], [100, 100, 150, 100, 150, 150, 100, 150]
    band = [0, 100, 6, 100, 60, 154, 54, 154]
    gt = {
        "images": [{"id": 1, "height": height, "width": width}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": [poly], "iscrowd": 0,
             "area": box(poly)[2] * box(poly)[3], "bbox": box(poly)}
            for i, poly in enumerate([small, medium])
        ],
    }  # fmt: skip
    masks = encode_polygons([small, medium, band], height, width)
    results = [
        {"image_id": 1, "category_id": 1, "score": score, "segmentation": mask, "bbox": box(poly)}
        for mask, poly, score in zip(masks, [small, medium, band], [0.8, 0.7, 0.9], strict=True)
    ]
    gt_path = write_json(tmp_path / "gt.json", gt)
    results_path = write_json(tmp_path / "res.json", results)

    stripped = pycocotools_reference(gt_path, results_path, "segm")
    kept = pycocotools_reference(gt_path, results_path, "segm", strip_bbox=False)
    assert stripped["APs"] < 1.0 and stripped["APm"] == pytest.approx(1.0)
    assert kept["APs"] == pytest.approx(1.0) and kept["APm"] < 1.0
    for backend in BACKENDS:
        ours = evaluate_coco(gt_path, results_path, backend=backend, iou_types=["segm"])
        assert_stats_close(ours.stats["segm"], stripped)


# --- what is evaluated --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boxes", "masks", "expected"),
    [(True, False, ["bbox"]), (False, True, ["segm"]), (True, True, ["bbox", "segm"])],
)
def test_iou_types_follow_the_results(
    tmp_path: Path, boxes: bool, masks: bool, expected: list[str]
) -> None:
    gt = make_ground_truth(20, 3)
    results = make_detections(gt, detections_per_image=10, boxes=boxes, masks=masks)
    gt_path = write_json(tmp_path / "gt.json", gt)
    result = evaluate_coco(gt_path, write_json(tmp_path / "res.json", results))
    assert list(result.stats) == expected
    assert {row.iou_type for row in result.per_category} == set(expected)


def test_explicit_iou_types(small_files: tuple[Path, Path]) -> None:
    result = evaluate_coco(*small_files, iou_types=["segm"])
    assert list(result.stats) == ["segm"]


def test_results_as_list_are_not_modified(small_files: tuple[Path, Path]) -> None:
    gt_path, results_path = small_files
    records = json.loads(results_path.read_text())
    before = json.dumps(records)
    from_list = evaluate_coco(gt_path, records)
    assert json.dumps(records) == before
    assert from_list.stats == evaluate_coco(gt_path, results_path).stats


# --- per-category AP and PR curves --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_category_mean_equals_overall_ap(
    evaluated: dict[str, EvaluationResult], backend: str
) -> None:
    result = evaluated[backend]
    for iou_type in ("bbox", "segm"):
        rows = [row for row in result.per_category if row.iou_type == iou_type]
        assert [row.category_id for row in rows] == [1, 2, 3, 4, 5, 6]
        assert mean_category_ap(result, iou_type) == pytest.approx(
            result.stats[iou_type]["AP"], abs=1e-12
        )


def test_pr_curves(evaluated: dict[str, EvaluationResult]) -> None:
    curves = evaluated["faster_coco_eval"].pr_curves
    assert [(c.iou_type, c.iou_threshold) for c in curves] == [
        ("bbox", 0.5), ("bbox", 0.75), ("segm", 0.5), ("segm", 0.75),
    ]  # fmt: skip
    for curve in curves:
        assert len(curve.recall) == len(curve.precision) == 101
        assert curve.recall[0] == 0.0 and curve.recall[-1] == 1.0
        # interpolated precision never rises with recall
        assert all(a >= b for a, b in zip(curve.precision, curve.precision[1:], strict=False))
    # stricter IoU, lower precision
    assert sum(curves[1].precision) < sum(curves[0].precision)


def test_perfect_detections_and_a_category_without_gt(tmp_path: Path) -> None:
    gt = make_ground_truth(40, 4)
    gt["categories"].append({"id": 99, "name": "unused", "supercategory": "fake"})
    gt_path = write_json(tmp_path / "gt.json", gt)
    results_path = write_json(tmp_path / "res.json", detections_from_ground_truth(gt))
    for backend in BACKENDS:
        result = evaluate_coco(gt_path, results_path, backend=backend)
        for stats in result.stats.values():
            assert stats["AP"] == stats["AP50"] == stats["AP75"] == 1.0
            assert stats["AR100"] == 1.0
        unused = [row for row in result.per_category if row.category_id == 99]
        assert len(unused) == 2 and all(math.isnan(row.AP) for row in unused)
    write_per_category_csv(result, tmp_path / "per_category.csv")
    with open(tmp_path / "per_category.csv", newline="") as handle:
        unused_rows = [row for row in csv.DictReader(handle) if row["category_id"] == "99"]
    assert [row["AP"] for row in unused_rows] == ["", ""]


# --- empty and bad input ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_results_give_zero(
    small_files: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    empty = write_json(tmp_path / "empty.json", [])
    with caplog.at_level(logging.WARNING):
        result = evaluate_coco(small_files[0], empty, backend=backend)
    assert "no detections" in caplog.text and "empty.json" in caplog.text
    assert list(result.stats) == ["bbox", "segm"]
    for stats in result.stats.values():
        assert stats["AP"] == 0.0 and stats["AR100"] == 0.0
        assert set(stats.values()) <= {0.0, -1.0}


@pytest.mark.parametrize(
    ("key", "bad_id"),
    [("image_id", 987654), ("category_id", 77)],
    ids=["image", "category"],
)
def test_unknown_ids_are_refused(
    small_files: tuple[Path, Path], tmp_path: Path, key: str, bad_id: object
) -> None:
    gt_path, results_path = small_files
    records = json.loads(results_path.read_text())
    records[3][key] = bad_id
    bad = write_json(tmp_path / "bad_ids.json", records)
    expected = rf"bad_ids\.json: detection\[3\] has {key} {re.escape(repr(bad_id))}.*gt\.json"
    with pytest.raises(PipelineError, match=expected):
        evaluate_coco(gt_path, bad)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("segmentation", None, r"needs 'segmentation' in every detection, but detection\[5\]"),
        (
            "bbox",
            [1.0, 2.0, 3.0],
            r"detection\[5\] \(image_id \d+\) has 'bbox' .*expected \[x, y, w",
        ),
        ("segmentation", [[1, 2, 3, 4, 5, 6]], r"detection\[5\] \(image_id \d+\) has 'segm.*RLE"),
    ],
    ids=["missing", "short-box", "polygon"],
)
def test_malformed_detections_are_named(
    small_files: tuple[Path, Path], tmp_path: Path, field: str, value: object, expected: str
) -> None:
    gt_path, results_path = small_files
    records = json.loads(results_path.read_text())
    if value is None:
        del records[5][field]
    else:
        records[5][field] = value
    bad = write_json(tmp_path / "malformed.json", records)
    with pytest.raises(PipelineError, match=rf"malformed\.json: .*{expected}"):
        evaluate_coco(gt_path, bad)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("score", NAN, "has score nan, expected a finite number"),
        ("score", INF, "has score inf, expected a finite number"),
        ("score", "0.9", "has score '0.9', expected a finite number"),
        ("score", None, "has score None, expected a finite number"),
        ("score", True, "has score True, expected a finite number"),
        ("bbox", [NAN, NAN, NAN, NAN], r"has 'bbox' \[nan, nan, nan, nan\], expected finite"),
        ("bbox", [0.0, 0.0, INF, 1.0], r"has 'bbox' \[0\.0, 0\.0, inf, 1\.0\], expected finite"),
        ("bbox", [0, 0, "5", 5], r"has 'bbox' \[0, 0, '5', 5\], expected finite"),
        ("category_id", "1", "has category_id '1', expected an integer id"),
        ("image_id", None, "has image_id None, expected an integer id"),
        ("image_id", NAN, "has image_id nan, expected an integer id"),
        ("image_id", [1], r"has image_id \[1\], expected an integer id"),
    ],
    ids=[
        "nan-score",
        "inf-score",
        "string-score",
        "null-score",
        "bool-score",
        "nan-box",
        "inf-box",
        "string-box",
        "string-category",
        "null-image",
        "nan-image",
        "unhashable-image",
    ],
)
def test_non_finite_or_non_numeric_values_are_named(
    small_files: tuple[Path, Path], tmp_path: Path, field: str, value: object, expected: str
) -> None:
    """Issue 12: NaN scores made faster-coco-eval fail with a bare ValueError and pycocotools
    report AP 1.0; NaN boxes gave different numbers on the two backends; a string score was
    a bare TypeError. Checked before either backend runs, so both give this one error."""
    gt_path, results_path = small_files
    records = json.loads(results_path.read_text())  # json reads NaN and Infinity as floats
    image_id = records[3]["image_id"]
    records[3][field] = value
    bad = write_json(tmp_path / "bad_values.json", records)
    where = "" if field == "image_id" else rf" \(image_id {image_id}\)"
    pattern = rf"bad_values\.json: detection\[3\]{where} {expected}"
    for backend in BACKENDS:
        with pytest.raises(PipelineError, match=pattern):
            evaluate_coco(gt_path, bad, backend=backend)


def test_all_nan_scores_on_perfect_boxes_are_refused(tmp_path: Path) -> None:
    """pycocotools exited 0 with AP 1.0 here."""
    gt = make_ground_truth(10, 2)
    detections = detections_from_ground_truth(gt)
    for detection in detections:
        detection["score"] = NAN
    results = write_json(tmp_path / "nan.json", detections)
    gt_path = write_json(tmp_path / "gt.json", gt)
    for backend in BACKENDS:
        with pytest.raises(PipelineError, match=r"nan\.json: detection\[0\] .*has score nan"):
            evaluate_coco(gt_path, results, backend=backend)


def test_a_nan_box_is_ignored_when_only_masks_are_evaluated(
    small_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """segm takes its boxes from the masks: a bad 'bbox' only matters when bbox is evaluated."""
    gt_path, results_path = small_files
    records = json.loads(results_path.read_text())
    records[3]["bbox"] = [NAN] * 4
    bad = write_json(tmp_path / "nan_box.json", records)
    assert list(evaluate_coco(gt_path, bad, iou_types=["segm"]).stats) == ["segm"]


@pytest.mark.parametrize("which", ["annotations", "results"])
@pytest.mark.parametrize("problem", ["missing", "not JSON", "wrong shape"])
def test_bad_files_name_the_file(
    small_files: tuple[Path, Path], tmp_path: Path, which: str, problem: str
) -> None:
    bad = tmp_path / f"broken_{which}.json"
    if problem == "not JSON":
        bad.write_text('{"images": [')
    elif problem == "wrong shape":
        bad.write_text(json.dumps({"images": []} if which == "results" else []))
    paths = {"annotations": small_files[0], "results": small_files[1], which: bad}
    with pytest.raises(PipelineError, match=rf"broken_{which}\.json"):
        evaluate_coco(paths["annotations"], paths["results"])


def test_unknown_backend_and_iou_type(small_files: tuple[Path, Path]) -> None:
    with pytest.raises(PipelineError, match="faster_coco_eval, pycocotools"):
        evaluate_coco(*small_files, backend="detectron2")
    with pytest.raises(PipelineError, match="keypoints"):
        evaluate_coco(*small_files, iou_types=["keypoints"])


def test_library_prints_nothing_to_stdout(
    small_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for backend in BACKENDS:
        evaluate_coco(*small_files, backend=backend)
    assert capsys.readouterr().out == ""


# --- writers and CLI ----------------------------------------------------------------------


def test_writers(evaluated: dict[str, EvaluationResult], tmp_path: Path) -> None:
    result = evaluated["faster_coco_eval"]
    write_metrics(result, tmp_path / "out" / "metrics.json")
    write_per_category_csv(result, tmp_path / "per_category.csv")
    write_pr_curves_csv(result, tmp_path / "pr.csv")

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics == result.stats and list(metrics["segm"]) == list(STAT_NAMES)
    with open(tmp_path / "per_category.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["iou_type", "category_id", "category_name", "AP", "AP50", "AP75"]
    assert len(rows) == 12 and float(rows[0]["AP"]) == result.per_category[0].AP
    with open(tmp_path / "pr.csv", newline="") as handle:
        curve_rows = list(csv.DictReader(handle))
    assert list(curve_rows[0]) == ["iou_type", "iou_threshold", "recall", "precision"]
    assert len(curve_rows) == 4 * 101


def test_cli_writes_documented_outputs(small_files: tuple[Path, Path], tmp_path: Path) -> None:
    gt_path, results_path = small_files
    out, per_category, curves = tmp_path / "m.json", tmp_path / "pc.csv", tmp_path / "pr.csv"
    done = run_script("evaluate.py", [
        "--annotations", gt_path, "--results", results_path, "--out", out,
        "--backend", "pycocotools", "--iou-types", "bbox", "segm",
        "--per-category-csv", per_category, "--pr-curves-csv", curves,
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # library output goes to the log (stderr)
    assert "AP=" in done.stderr
    metrics = json.loads(out.read_text())
    assert list(metrics) == ["bbox", "segm"]
    assert all(list(stats) == list(STAT_NAMES) for stats in metrics.values())
    assert metrics == evaluate_coco(gt_path, results_path).stats
    assert per_category.read_text().startswith("iou_type,category_id,category_name,AP,AP50,AP75\n")
    assert curves.read_text().startswith("iou_type,iou_threshold,recall,precision\n")


def test_cli_bad_input_exits_2(small_files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    missing = tmp_path / "nope.json"
    done = run_script(
        "evaluate.py", ["--annotations", small_files[0], "--results", missing, "--out", out]
    )
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "nope.json" in message
    assert "Traceback" not in done.stderr and not out.exists()


def test_cli_help_documents_every_option() -> None:
    done = run_script("evaluate.py", ["--help"])
    assert done.returncode == 0
    for option in ("--annotations", "--results", "--out", "--backend", "--iou-types",
                   "--per-category-csv", "--pr-curves-csv"):  # fmt: skip
        assert option in done.stdout
    # The docstring names the stats metrics.json holds: all of them.
    assert all(re.search(rf"\b{name}\b", done.stdout) for name in STAT_NAMES), done.stdout


# --- the generator ------------------------------------------------------------------------


def test_fake_coco_is_deterministic() -> None:
    gt = make_ground_truth(10, 3, seed=5)
    assert json.dumps(gt) == json.dumps(make_ground_truth(10, 3, seed=5))
    assert json.dumps(make_detections(gt, seed=5)) == json.dumps(make_detections(gt, seed=5))
    assert json.dumps(gt) != json.dumps(make_ground_truth(10, 3, seed=6))
    assert len(make_detections(gt, detections_per_image=7)) == 70


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_category_csv_averages_to_the_overall_stats(
    evaluated: dict[str, EvaluationResult], backend: str, tmp_path: Path
) -> None:
    """The CSV the report reads: its AP, AP50 and AP75 columns, averaged over categories with
    ground truth (empty cells are categories without), are metrics.json's stats."""
    result = evaluated[backend]
    path = tmp_path / "per_category.csv"
    write_per_category_csv(result, path)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for iou_type, stats in result.stats.items():
        for stat in ("AP", "AP50", "AP75"):
            values = [float(r[stat]) for r in rows if r["iou_type"] == iou_type and r[stat]]
            assert len(values) == 6
            assert 0.0 < stats[stat] < 1.0, "the fake detections give a non-trivial AP"
            assert sum(values) / len(values) == pytest.approx(stats[stat], abs=1e-12)
