"""Prediction shared by several processes: whole batches dealt round-robin, merged on rank 0
in image-id order, and the same results whatever the number of processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn_pipeline.evaluation import evaluate_coco
from maskrcnn_pipeline.inference.sharding import (
    Shard,
    batch_indices,
    batches_of_shard,
    in_batch_order,
)
from tests.support.datasets import make_tiny_dataset
from tests.support.paths import TESTS_DATA
from tests.support.workflow import run_script


def test_batches_cover_every_index_once_in_order() -> None:
    assert batch_indices(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batch_indices(0, 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        batch_indices(4, 0)


@pytest.mark.parametrize("count", [0, 1, 5, 12, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_merge_back_into_the_one_process_order(count: int, world_size: int) -> None:
    batches = batch_indices(count, 2)
    per_rank = [batches_of_shard(batches, Shard(rank, world_size)) for rank in range(world_size)]
    assert sorted(i for shard in per_rank for batch in shard for i in batch) == list(range(count))
    assert in_batch_order(per_rank) == batches


def test_a_rank_outside_its_world_is_refused() -> None:
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        Shard(2, 2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny run trained for 2 iterations, and a folder of images of different sizes (so
    that a batch's padding depends on which images share it)."""
    root = tmp_path_factory.mktemp("sharding")
    data = make_tiny_dataset(root / "data", train=4, val=7)
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    config["runs"]["tiny"]["solver"]["max_iter"] = 2
    config["runs"]["tiny"]["test"].update(min_size=48, max_size=96)
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = run_script(
        "train.py",
        [
            *("--config", config_path, "--run", "tiny"),
            *("--images", data / "train", "--annotations", data / "annotations" / "train.json"),
            *("--out-dir", root / "train"),
        ],
    )
    assert result.returncode == 0, result.stderr
    folder = root / "folder"
    folder.mkdir()
    for index, source in enumerate(sorted((data / "val").iterdir())):
        with Image.open(source) as image:
            size = (64 + 9 * index, 64 - 4 * index)
            image.convert("RGB").resize(size).save(folder / f"{index:02d}.png")
    return {"config": config_path, "model": root / "train" / "model_final.pth", "folder": folder}


def predict_folder(trained: dict[str, Path], out: Path, processes: int) -> list[dict]:
    config = yaml.safe_load(trained["config"].read_text())
    config["runs"]["tiny"]["cpu_processes"] = processes
    config_path = out / "config.yaml"
    out.mkdir()
    config_path.write_text(yaml.safe_dump(config))
    result = run_script(
        "predict.py",
        [
            *("--config", config_path, "--run", "tiny", "--model", trained["model"]),
            *("--images", trained["folder"], "--out", out / "predictions.json"),
            *("--image-index", out / "images.json", "--workers", 0),
        ],
    )
    assert result.returncode == 0, result.stderr
    assert f"({processes} process(es))" in result.stderr
    return json.loads((out / "predictions.json").read_text())


@pytest.mark.slow
def test_two_processes_predict_exactly_what_one_does(trained, tmp_path: Path) -> None:
    alone = predict_folder(trained, tmp_path / "one", 1)
    shared = predict_folder(trained, tmp_path / "two", 2)
    assert len(alone) == 7 * 10  # score_thresh 0: detections_per_img on each image
    assert shared == alone  # same batches, same padding: identical results, same order
    assert [r["image_id"] for r in shared] == sorted(r["image_id"] for r in shared)
    index = json.loads((tmp_path / "two" / "images.json").read_text())
    assert [image["id"] for image in index["images"]] == list(range(1, 8))


def as_ground_truth(annotations: Path, results: list[dict], out: Path) -> Path:
    """The split's images with the 3 best detections of each image as its objects: a ground
    truth that a model barely trained scores well on (so equal APs are not all zeros)."""
    dataset = json.loads(annotations.read_text())
    best: list[dict] = []
    for image in dataset["images"]:
        found = [r for r in results if r["image_id"] == image["id"]]
        best += sorted(found, key=lambda r: -r["score"])[:3]
    dataset["annotations"] = [
        {
            "id": index,
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "bbox": r["bbox"],
            "segmentation": r["segmentation"],
            "area": float(mask_utils.area(r["segmentation"])),
            "iscrowd": 0,
        }
        for index, r in enumerate(best, start=1)
    ]
    out.write_text(json.dumps(dataset))
    return out


@pytest.mark.slow
def test_periodic_evaluation_on_two_processes_is_the_predict_jobs_result(tmp_path: Path) -> None:
    """Training's evaluation (sharded over its 2 gloo processes) logs exactly the AP of the
    final model's predict job on the same split and ground truth."""
    data = make_tiny_dataset(tmp_path / "data", train=4, val=5)
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    run = config["runs"]["tiny"]
    run.update(cpu_processes=2, eval_period=2)
    run["solver"]["max_iter"] = 2
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    settings = ("--config", config_path, "--run", "tiny")

    def train(out: Path, eval_annotations: Path) -> dict:
        result = run_script(
            "train.py",
            [
                *settings,
                *("--images", data / "train", "--out-dir", out),
                *("--annotations", data / "annotations" / "train.json"),
                *("--eval-images", data / "val", "--eval-annotations", eval_annotations),
            ],
        )
        assert result.returncode == 0, result.stderr
        (logged,) = [
            json.loads(line) for line in (out / "metrics.jsonl").open() if '"eval"' in line
        ]
        return logged["eval"]

    def predict(model: Path, annotations: Path, out: Path) -> list[dict]:
        args = [*settings, "--model", model, "--images", data / "val", "--out", out]
        result = run_script("predict.py", [*args, "--annotations", annotations])
        assert result.returncode == 0, result.stderr
        assert "(2 process(es))" in result.stderr
        return json.loads(out.read_text())

    first = tmp_path / "first"
    train(first, data / "annotations" / "val.json")
    results = predict(first / "model_final.pth", data / "annotations" / "val.json", tmp_path / "p1")
    truth = as_ground_truth(data / "annotations" / "val.json", results, tmp_path / "truth.json")
    # the same (deterministic) training again, evaluated during training against that truth
    during = train(tmp_path / "second", truth)
    model = tmp_path / "second" / "model_final.pth"
    assert predict(model, truth, tmp_path / "p2") == results
    after = evaluate_coco(truth, results).stats
    assert after["bbox"]["AP"] > 0.5 and after["segm"]["AP"] > 0.5
    assert during == after
