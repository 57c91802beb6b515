"""The predict path: the batched paste against torchvision's stock path on the tiny model,
encoding beside the network, results in image-id order, unreadable images."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from maskrcnn_pipeline.data.categories import Categories
from maskrcnn_pipeline.data.coco import load_coco
from maskrcnn_pipeline.errors import DataError
from maskrcnn_pipeline.evaluation import evaluate_coco
from maskrcnn_pipeline.inference.predict import (
    Predictor,
    batches,
    images_from_annotations,
    images_from_folder,
    predict,
    predict_batches,
    predict_entries,
)
from maskrcnn_pipeline.inference.sharding import Shard
from maskrcnn_pipeline.model.build import build_model, configure_inference
from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.params import predict_settings
from tests.support.datasets import make_tiny_dataset
from tests.support.images import cut
from tests.support.paths import TESTS_DATA

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), train=2, val=12)


@pytest.fixture(scope="module")
def tiny_model(tiny_data: Path) -> tuple[torch.nn.Module, Categories]:
    """The tiny run's model with random weights: score_thresh 0 gives it 10 detections an
    image, with mask probabilities near 0.5 (the hardest case for a threshold)."""
    config = validate_config(yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text()))
    run = config["runs"]["tiny"]
    annotations = load_coco(tiny_data / "annotations" / "val.json")
    categories = Categories.from_records(annotations.dataset["categories"])
    torch.manual_seed(0)
    model = build_model(run["model"], num_classes=len(categories), input_settings=run["input"])
    configure_inference(model, run["test"])
    return model.eval(), categories


def test_stock_path_is_torchvisions_forward(tiny_model) -> None:
    model, categories = tiny_model
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    images.append(torch.randint(0, 256, (3, 48, 80), dtype=torch.uint8))
    with torch.inference_mode():
        expected = model([image.float() / 255 for image in images])
    found = Predictor(model, categories, CPU, paste="torchvision")(images)
    for theirs, ours in zip(expected, found, strict=True):
        for key in ("boxes", "scores", "labels", "masks"):
            assert torch.equal(theirs[key].float(), torch.from_numpy(getattr(ours, key))), key


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batched_paste_gives_torchvisions_results(tiny_model, tiny_data, precision) -> None:
    """Same detections, boxes and scores; masks identical in fp32; in bf16 torchvision
    interpolates in bf16 and the batched paste in fp32, so a few masks differ: segm AP
    within 0.002 and bbox stats identical."""
    model, categories = tiny_model
    annotations = tiny_data / "annotations" / "val.json"
    entries = images_from_annotations(tiny_data / "val", annotations)
    results = {
        paste: predict_entries(Predictor(model, categories, CPU, precision, paste), entries, 5, 0)
        for paste in ("torchvision", "batched")
    }
    stock, ours = results["torchvision"], results["batched"]
    assert len(stock) == len(ours) == 10 * len(entries)
    drop = ("segmentation",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in ours] == [
        {k: v for k, v in r.items() if k not in drop} for r in stock
    ]
    same = sum(a["segmentation"] == b["segmentation"] for a, b in zip(ours, stock, strict=True))
    if precision == "fp32":
        assert same == len(ours)
    else:
        assert same >= 0.5 * len(ours)
    stats = {
        paste: evaluate_coco(annotations, found, iou_types=("bbox", "segm")).stats
        for paste, found in results.items()
    }
    assert stats["batched"]["bbox"] == stats["torchvision"]["bbox"]
    assert stats["batched"]["segm"]["AP"] == pytest.approx(
        stats["torchvision"]["segm"]["AP"], abs=0.002
    )


class FakePredictor:
    """Stands for Predictor in the loop: detections are the image ids; encoding sleeps a
    random time, so that threads finish out of order."""

    def __init__(self, block_first_encode: bool = False) -> None:
        self.calls = 0
        self.second_call = threading.Event()
        self.block_first_encode = block_first_encode
        self.waited: list[bool] = []
        self.random = random.Random(0)

    def __call__(self, images: list[torch.Tensor]) -> list[int]:
        self.calls += 1
        if self.calls == 2:
            self.second_call.set()
        return [int(image) for image in images]

    def encode(self, image_ids: Sequence[int], detections: Sequence[int]) -> list[dict[str, Any]]:
        if self.block_first_encode and image_ids[0] == 1:
            # the loop must call the network for batch 2 while batch 1 is still encoding
            self.waited.append(self.second_call.wait(timeout=10))
        time.sleep(self.random.uniform(0, 0.02))
        return [{"image_id": i, "found": d} for i, d in zip(image_ids, detections, strict=True)]


def fake_batches(count: int, size: int) -> list[tuple[list[int], list[torch.Tensor]]]:
    ids = [list(range(first, first + size)) for first in range(1, count * size + 1, size)]
    return [(batch, [torch.tensor(i) for i in batch]) for batch in ids]


def test_results_stay_in_image_id_order_whatever_order_encoding_ends() -> None:
    results = predict_batches(FakePredictor(), fake_batches(30, 3), encode_threads=4)
    assert [r["image_id"] for r in results] == list(range(1, 91))
    assert all(r["found"] == r["image_id"] for r in results)


def test_the_network_does_not_wait_for_encoding() -> None:
    predictor = FakePredictor(block_first_encode=True)
    results = predict_batches(predictor, fake_batches(3, 2))
    assert predictor.waited == [True]
    assert [r["image_id"] for r in results] == list(range(1, 7))


def test_an_encoding_error_reaches_the_caller() -> None:
    class Failing(FakePredictor):
        def encode(self, image_ids: Sequence[int], detections: Sequence[int]) -> list:
            raise ValueError(f"cannot encode image {image_ids[0]}")

    with pytest.raises(ValueError, match="cannot encode image 1"):
        predict_batches(Failing(), fake_batches(2, 1))


def test_inference_over_a_folder_skips_an_unreadable_image_and_lists_it(
    tiny_model, tiny_data: Path, tmp_path: Path
) -> None:
    """One broken photo must not cost the rest of a folder; it is listed with its reason."""
    model, categories = tiny_model
    config = validate_config(yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text()))
    run = config["runs"]["tiny"]
    torch.save(
        {
            "model": model.state_dict(),
            "model_settings": run["model"],
            "input_settings": run["input"],
            "categories": categories.to_list(),
        },
        tmp_path / "model_final.pth",
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    sources = sorted((tiny_data / "val").iterdir())[:3]
    for source in sources:
        shutil.copy(source, folder / source.name)
    broken = folder / sources[1].name
    cut(broken, broken.stat().st_size // 2)
    (folder / "notes.jpg").write_text("not an image")
    entries = images_from_folder(folder)
    results = predict(
        tmp_path / "model_final.pth",
        entries,
        predict_settings(config, "tiny"),
        tmp_path / "predictions.json",
        workers=1,
        index_out=tmp_path / "images.json",
    )
    index = json.loads((tmp_path / "images.json").read_text())
    by_name = {entry.path.name: entry.image_id for entry in entries}
    kept = {sources[0].name, sources[2].name}
    assert {image["file_name"] for image in index["images"]} == kept
    assert {r["image_id"] for r in results} == {by_name[name] for name in kept}
    skipped = {item["file_name"]: item for item in index["skipped"]}
    assert set(skipped) == {broken.name, "notes.jpg"}
    assert skipped[broken.name]["id"] == by_name[broken.name]
    assert "the file is truncated" in skipped[broken.name]["reason"]
    assert "notes.jpg: cannot decode image" in skipped["notes.jpg"]["reason"]


def test_an_unreadable_image_of_an_annotated_split_stops_prediction(
    tiny_model, tiny_data: Path, tmp_path: Path
) -> None:
    """Evaluation must not quietly score fewer images than the annotations list."""
    model, categories = tiny_model
    folder = tmp_path / "val"
    shutil.copytree(tiny_data / "val", folder)
    entries = images_from_annotations(folder, tiny_data / "annotations" / "val.json")
    cut(entries[0].path, 100)
    with pytest.raises(DataError, match=rf"{entries[0].path.name}: cannot decode image"):
        predict_entries(Predictor(model, categories, CPU), entries, batch_size=4, workers=0)


def test_a_batch_whose_images_are_all_skipped_still_counts_for_the_shards(
    tiny_data: Path, tmp_path: Path
) -> None:
    """Rank 0 puts the ranks' batches back in order by their position: a batch of skipped
    images must still be there (empty), or every later batch would be misplaced."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in sorted((tiny_data / "val").iterdir())[:5]:
        shutil.copy(source, folder / source.name)
    entries = images_from_folder(folder)
    cut(entries[2].path, 100)
    skipped: dict[int, str] = {}
    dealt = list(batches(entries, 1, 0, Shard(rank=0, world_size=2), skipped))
    assert [ids for ids, _ in dealt] == [[1], [], [5]]  # batches 0, 2, 4 of 0..4
    assert list(skipped) == [3]
