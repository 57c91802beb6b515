"""The benchmark CLIs (NVIDIA's train/inference benchmark equivalents) on tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from maskrcnn_pipeline.train.benchmark import latency_figures
from tests.support.paths import REPO, TESTS_DATA
from tests.support.workflow import run_script

TINY = ["--config", str(TESTS_DATA / "tiny.yaml"), "--run", "tiny"]
SMALL = ["--height", "64", "--width", "96", "--classes", "3"]


def test_training_benchmark_reports_throughput(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    result = run_script(
        "benchmark_train.py",
        [
            *TINY,
            *SMALL,
            "--set",
            "solver.ims_per_gpu=3",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures == json.loads(out.read_text())
    assert (figures["iterations"], figures["batch_size"], figures["data"]) == (3, 3, "synthetic")
    assert figures["images_per_s"] == pytest.approx(3 * 3 / figures["seconds"], rel=1e-2)


def test_inference_benchmark_reports_latency_per_batch_size(tmp_path: Path) -> None:
    result = run_script(
        "benchmark_inference.py",
        [*TINY, *SMALL, "--batch-sizes", "1", "2", "--iterations", "3", "--warmup", "1"],
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout.splitlines()[-1])["results"]
    assert [(r["batch_size"], r["iterations"]) for r in rows] == [(1, 3), (2, 3)]
    assert all(r["latency_ms_p50"] <= r["latency_ms_p99"] for r in rows)


def test_predict_speed_benchmark_reports_both_paths_and_their_ratios() -> None:
    """bench/predict_speed.py on tiny sizes: the JSON's shape only (never its timings)."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "predict_speed.py"),
            *TINY,
            *SMALL,
            "--detections",
            "7",
            "--batch-size",
            "2",
            "--iterations",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout.splitlines()[-1])
    assert (figures["benchmark"], figures["images"], figures["batch_size"]) == (
        "predict_speed",
        4,
        2,
    )
    assert figures["detections_per_image"] == 7
    stages = {"model", "paste", "transfer", "encode", "post_network"}
    for path in ("project", "stock"):
        assert set(figures[path]["ms_per_image"]) == stages
        assert figures[path]["images_per_s"] > 0
    assert set(figures["speedup"]) == stages
    assert figures["post_network_speedup"] == figures["speedup"]["post_network"] > 0
    assert figures["end_to_end_speedup"] > 0
    # fp32: the batched paste gives torchvision's masks exactly
    assert figures["same_detections"] is True and figures["identical_masks"] == 1.0
    assert isinstance(figures["goal_met"], bool)


def test_unknown_override_names_the_keys() -> None:
    result = run_script("benchmark_train.py", [*TINY, "--set", "solver.lr=1"])
    assert result.returncode == 2
    assert "--set solver.lr: unknown key 'lr'" in result.stderr


def test_latency_percentiles() -> None:
    figures = latency_figures([0.1, 0.2, 0.3, 0.4], batch_size=2)
    assert figures["latency_ms_mean"] == pytest.approx(250)
    assert figures["latency_ms_p50"] == pytest.approx(250)
    assert figures["images_per_s"] == pytest.approx(8 / 1.0)


def test_gpu_check_summary_prints_ratios_against_nvidia(tmp_path: Path) -> None:
    train = {"images_per_s": 48.0, "ms_per_iteration": 250.0, "device": "cuda:0"}
    (tmp_path / "train_bf16_nhwc.json").write_text(json.dumps(train))
    (tmp_path / "train_fp32.json").write_text(json.dumps({**train, "images_per_s": 24.0}))
    rows = [
        {"batch_size": size, "images_per_s": ips, "latency_ms_mean": 1000 * size / ips}
        for size, ips in ((1, 23.0), (8, 62.0))
    ]
    (tmp_path / "inference_bf16_nhwc.json").write_text(json.dumps({"results": rows}))
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "metrics.json").write_text(json.dumps({"segm": {"AP": 0.1}}))
    split = {"predict_s": 90.0, "evaluate_s": 30.0, "total_s": 120.0, "images_per_s": 55.6}
    (tmp_path / "val_size_predict.json").write_text(json.dumps({**split, "speedup": 9.0}))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check_summary.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["train_images_per_s_vs_nvidia_a100"] == 2.0
    assert figures["bf16_nhwc_over_fp32"] == 2.0
    assert figures["infer_bs8_images_per_s_vs_nvidia_a100"] == 2.0
    assert figures["val_size_total_s"] == 120.0 and figures["val_size_speedup"] == 9.0


def test_val_size_benchmark_predicts_and_evaluates_the_whole_split() -> None:
    """bench/val_size_predict.py on a tiny split: every image predicted and evaluated (the
    JSON's shape and counts only, never its timings)."""
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "val_size_predict.py"),
            *TINY,
            *("--images", "9", "--unique", "4", "--image-size", "64"),
            *("--baseline-images", "3", "--workers", "0"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout.splitlines()[-1])
    assert (figures["benchmark"], figures["images"]) == ("val_size_predict", 9)
    assert figures["detections"] == 9 * 10  # tiny test settings: 10 detections an image
    assert figures["total_s"] >= figures["predict_s"] > 0 and figures["speedup"] > 0
