"""Tests of inference overlays (maskrcnn_pipeline.report.overlays, scripts/overlay.py).

The predictions and image index are written in the formats ``scripts/predict.py
--image-index`` produces; the end-to-end path through the model is in test_report_workflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.report.overlays import MIN_OVERLAY_SIDE, overlay_names, write_overlays
from tests.support.report import PNG_SIGNATURE
from tests.support.report_inputs import HEIGHT, WIDTH, predictions_for, write_dataset, write_json
from tests.support.workflow import run_script


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A folder of images, its image index (no annotations) and predictions on it."""
    root = tmp_path_factory.mktemp("inference")
    gt_path, images = write_dataset(root)
    gt = json.loads(gt_path.read_text())
    index = write_json(
        root / "images.json", {"images": gt["images"], "categories": gt["categories"]}
    )
    predictions = write_json(root / "predictions.json", predictions_for(gt_path))
    return {"index": index, "images": images, "predictions": predictions, "gt": gt}


def test_one_overlay_per_image_at_a_readable_size(folder: dict[str, Any], tmp_path: Path) -> None:
    written = write_overlays(
        predictions=folder["predictions"],
        index=folder["index"],
        images=folder["images"],
        out_dir=tmp_path,
        score_threshold=0.5,
    )
    expected = [Path(image["file_name"]).stem + ".png" for image in folder["gt"]["images"]]
    assert [p.name for p in written] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    scale = MIN_OVERLAY_SIDE / max(HEIGHT, WIDTH)
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        with Image.open(path) as image:
            assert image.size == (round(WIDTH * scale), round(HEIGHT * scale))


def test_overlays_follow_the_predictions_and_threshold(
    folder: dict[str, Any], tmp_path: Path
) -> None:
    def first_overlay(out: str, threshold: float, predictions: Path | None = None) -> bytes:
        written = write_overlays(
            predictions=predictions or folder["predictions"],
            index=folder["index"],
            images=folder["images"],
            out_dir=tmp_path / out,
            score_threshold=threshold,
        )
        return written[0].read_bytes()

    drawn = first_overlay("a", 0.5)
    assert first_overlay("b", 0.5) == drawn, "same inputs, same image"
    assert first_overlay("c", 0.99) != drawn
    empty = write_json(tmp_path / "none.json", [])
    assert first_overlay("d", 0.5, empty) != drawn


def test_names_keep_suffixes_only_when_stems_collide() -> None:
    assert overlay_names(["b.jpg", "a.jpg", "a.png", "c.jpeg"]) == [
        "b.png",
        "a_jpg.png",
        "a_png.png",
        "c.png",
    ]


def test_bad_inputs_are_named(folder: dict[str, Any], tmp_path: Path) -> None:
    common = {"index": folder["index"], "images": folder["images"], "out_dir": tmp_path}
    with pytest.raises(PipelineError, match=r"score_threshold must lie in \[0, 1\]"):
        write_overlays(predictions=folder["predictions"], score_threshold=2.0, **common)
    with pytest.raises(PipelineError, match="image not found"):
        write_overlays(
            predictions=folder["predictions"],
            score_threshold=0.5,
            **common | {"images": tmp_path / "elsewhere"},
        )


def test_cli_writes_overlays_and_sample(folder: dict[str, Any], tmp_path: Path) -> None:
    args = ["--predictions", str(folder["predictions"]), "--index", str(folder["index"])]
    args += ["--images", str(folder["images"]), "--out-dir", str(tmp_path / "overlays")]
    result = run_script("overlay.py", [*args, "--sample", str(tmp_path / "sample.png")])
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "overlays").iterdir())) == len(folder["gt"]["images"])
    with Image.open(tmp_path / "sample.png") as image:
        assert min(image.size) >= 300

    result = run_script("overlay.py", [*args, "--sample", "x.png", "--num-examples", "0"])
    assert result.returncode == 2 and "--num-examples" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_help_documents_every_option() -> None:
    result = run_script("overlay.py", ["--help"])
    assert result.returncode == 0
    for option in (
        "--predictions",
        "--index",
        "--images",
        "--out-dir",
        "--sample",
        "--num-examples",
        "--score-threshold",
    ):
        assert option in result.stdout, option
