"""Tests for the synthetic demo dataset: determinism, exact COCO annotations, atomic output."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from maskrcnn_pipeline.data.synthetic import (
    CATEGORIES,
    SceneConfig,
    generate_synthetic_dataset,
    image_rng,
    rasterise_polygon,
    render_scene,
)
from maskrcnn_pipeline.errors import PipelineError
from tests.support.workflow import run_script

pytestmark = pytest.mark.filterwarnings(
    # pycocotools 2.0.11 decode() trips a NumPy 2 deprecation on every call; not ours to fix.
    "ignore:__array__ implementation doesn.t accept a copy keyword:DeprecationWarning"
)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, to compare whole datasets byte for byte."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _mask_bbox(mask: np.ndarray) -> list[int]:
    """The tight ``[x, y, w, h]`` box of a binary mask, computed independently of the module."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """One ~100-image dataset shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("synthetic")
    counts = generate_synthetic_dataset(root, splits={"train": 100, "val": 10}, seed=3)
    return root, counts


@pytest.fixture(scope="module")
def train_coco(dataset: tuple[Path, dict[str, int]]) -> COCO:
    root, _ = dataset
    return COCO(str(root / "annotations" / "train.json"))


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    splits = {"train": 20, "val": 5}
    generate_synthetic_dataset(tmp_path / "a", splits=splits, seed=7)
    generate_synthetic_dataset(tmp_path / "b", splits=splits, seed=7)
    first, second = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert len(first) == 20 + 5 + 2
    assert first == second


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    generate_synthetic_dataset(tmp_path / "a", splits={"train": 5}, seed=1)
    generate_synthetic_dataset(tmp_path / "b", splits={"train": 5}, seed=2)
    first, second = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)


def test_changing_val_count_leaves_train_unchanged(tmp_path: Path) -> None:
    generate_synthetic_dataset(tmp_path / "a", splits={"train": 10, "val": 4}, seed=5)
    generate_synthetic_dataset(tmp_path / "b", splits={"train": 10, "val": 9}, seed=5)
    assert _tree_bytes(tmp_path / "a" / "train") == _tree_bytes(tmp_path / "b" / "train")
    assert (tmp_path / "a" / "annotations" / "train.json").read_bytes() == (
        tmp_path / "b" / "annotations" / "train.json"
    ).read_bytes()
    # Images do not depend on the split size either: the first 4 val images are shared.
    for index in range(4):
        name = f"val/{index:06d}.jpg"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_splits_draw_different_images(dataset: tuple[Path, dict[str, int]]) -> None:
    root, _ = dataset
    assert (root / "train" / "000000.jpg").read_bytes() != (
        root / "val" / "000000.jpg"
    ).read_bytes()


def test_returns_annotation_counts(dataset: tuple[Path, dict[str, int]], train_coco: COCO) -> None:
    _, counts = dataset
    assert set(counts) == {"train", "val"}
    assert counts["train"] == len(train_coco.anns)


def test_every_mask_matches_its_area_and_bbox(train_coco: COCO) -> None:
    assert len(train_coco.imgs) == 100
    for ann in train_coco.anns.values():
        mask = train_coco.annToMask(ann)
        assert mask.any(), ann["id"]
        assert int(mask.sum()) == ann["area"], ann["id"]
        assert _mask_bbox(mask) == ann["bbox"], ann["id"]
        assert ann["iscrowd"] == 0


def test_visible_masks_of_one_image_do_not_overlap(train_coco: COCO) -> None:
    for image_id in train_coco.imgs:
        masks = [train_coco.annToMask(a) for a in train_coco.imgToAnns[image_id]]
        for first, second in itertools.combinations(masks, 2):
            assert not (first & second).any(), image_id


def test_both_polygons_and_rles_occur(train_coco: COCO) -> None:
    anns = list(train_coco.anns.values())
    polygons = [a for a in anns if isinstance(a["segmentation"], list)]
    rles = [a for a in anns if isinstance(a["segmentation"], dict)]
    assert polygons and rles
    assert len(polygons) + len(rles) == len(anns)
    for ann in rles:
        image = train_coco.imgs[ann["image_id"]]
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["segmentation"]["size"] == [image["height"], image["width"]]


def test_categories_and_objects_per_image(train_coco: COCO) -> None:
    categories = train_coco.loadCats(train_coco.getCatIds())
    assert [(c["id"], c["name"]) for c in categories] == list(enumerate(CATEGORIES, start=1))
    used = {a["category_id"] for a in train_coco.anns.values()}
    assert used == {1, 2, 3, 4}
    for image_id in train_coco.imgs:
        assert 1 <= len(train_coco.imgToAnns[image_id]) <= 4


def test_images_are_jpegs_of_the_declared_size(
    dataset: tuple[Path, dict[str, int]], train_coco: COCO
) -> None:
    root, _ = dataset
    assert len(list((root / "train").iterdir())) == len(train_coco.imgs)
    for image in train_coco.imgs.values():
        with Image.open(root / "train" / image["file_name"]) as jpeg:
            assert jpeg.format == "JPEG"
            assert jpeg.mode == "RGB"
            assert jpeg.size == (image["width"], image["height"]) == (160, 160)


def test_at_least_half_of_every_object_stays_visible() -> None:
    config = SceneConfig()
    occluded = 0
    for index in range(150):
        scene = render_scene(image_rng(11, "check", index), config)
        assert scene.image.shape == (160, 160, 3)
        for obj in scene.objects:
            assert 2 * int(obj.visible_mask.sum()) >= int(obj.full_mask.sum())
            assert not (obj.visible_mask & ~obj.full_mask).any()
            # The stored polygon is exactly the shape that was drawn.
            assert np.array_equal(rasterise_polygon(obj.polygon, 160), obj.full_mask)
            occluded += obj.occluded
    assert occluded > 0, "no occlusion in 150 images: the check above tested nothing"


def test_object_sizes_stay_in_range() -> None:
    config = SceneConfig(min_object_size=20, max_object_size=40)
    for index in range(30):
        for obj in render_scene(image_rng(0, "sizes", index), config).objects:
            _, _, width, height = _mask_bbox(obj.full_mask)
            assert max(width, height) <= 40 + 1  # +1: pixels touched by the boundary


def test_regenerating_replaces_a_split_and_leaves_no_temporaries(tmp_path: Path) -> None:
    generate_synthetic_dataset(tmp_path, splits={"train": 6}, seed=0)
    generate_synthetic_dataset(tmp_path, splits={"train": 3}, seed=0)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [
        "000000.jpg",
        "000001.jpg",
        "000002.jpg",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations", "train"]
    assert [p.name for p in (tmp_path / "annotations").iterdir()] == ["train.json"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"min_objects": 5, "max_objects": 4}, "min_objects"),
        ({"min_objects": 0}, "min_objects"),
        ({"min_object_size": 50, "max_object_size": 20}, "min_object_size"),
        ({"image_size": 50}, "image_size"),
        ({"image_size": 160.5}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"splits": {"train": 0}}, "splits['train']"),
        ({"splits": {"a/b": 3}}, "'a/b'"),
        ({"splits": {"annotations": 3}}, "'annotations'"),
        ({"splits": {}}, "splits"),
    ],
)
def test_bad_arguments_name_the_argument(
    tmp_path: Path, kwargs: dict[str, Any], named: str
) -> None:
    arguments: dict[str, Any] = {"splits": {"train": 2}, **kwargs}
    with pytest.raises(PipelineError, match=named.replace("[", r"\[").replace("]", r"\]")):
        generate_synthetic_dataset(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists(), "arguments are checked before anything is written"


def test_impossible_crowding_names_min_objects_and_leaves_nothing(tmp_path: Path) -> None:
    crowded = {"image_size": 40, "min_object_size": 40, "max_object_size": 40}
    with pytest.raises(PipelineError, match="min_objects=8"):
        generate_synthetic_dataset(
            tmp_path, splits={"train": 2}, min_objects=8, max_objects=8, **crowded
        )
    assert list(tmp_path.iterdir()) == [], "no partial split folder or temporary is left"


def test_cli_help_documents_every_option() -> None:
    result = run_script("generate_synthetic.py", ["--help"])
    assert result.returncode == 0, result.stderr
    for option in (
        "--out",
        "--seed",
        "--train-images",
        "--val-images",
        "--image-size",
        "--min-objects",
        "--max-objects",
        "--min-object-size",
        "--max-object-size",
    ):
        assert option in result.stdout
    assert "(default: 800)" in result.stdout


def test_cli_writes_the_dataset(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = run_script(
        "generate_synthetic.py",
        ["--out", root, "--seed", "4", "--train-images", "6", "--val-images", "2"],
    )
    assert result.returncode == 0, result.stderr
    assert "wrote train: 6 images" in result.stderr
    assert len(list((root / "train").glob("*.jpg"))) == 6
    assert len(list((root / "val").glob("*.jpg"))) == 2
    # Same bytes as the library call with the same arguments.
    generate_synthetic_dataset(tmp_path / "direct", splits={"train": 6, "val": 2}, seed=4)
    assert _tree_bytes(root) == _tree_bytes(tmp_path / "direct")


def test_cli_reports_bad_arguments_without_traceback(tmp_path: Path) -> None:
    result = run_script("generate_synthetic.py", ["--out", tmp_path / "x", "--image-size", "50"])
    assert result.returncode == 2
    assert "image_size" in result.stderr
    assert "Traceback" not in result.stderr
