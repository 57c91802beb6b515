"""Folder sources: the split is checked and linked into data/<dataset>/, never copied."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskrcnn_pipeline.data.link import link_split
from maskrcnn_pipeline.errors import PipelineError
from tests.support.workflow import run_script


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "shared" / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "val2017" / "1.jpg").write_bytes(b"jpg")
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text("{}")
    return root


def links(tmp_path: Path) -> tuple[Path, Path]:
    return (
        tmp_path / "data" / "coco" / "val",
        tmp_path / "data" / "coco" / "annotations" / "val.json",
    )


def test_links_point_into_the_shared_folder(shared: Path, tmp_path: Path) -> None:
    images, annotations = links(tmp_path)
    link_split(
        shared / "val2017", shared / "annotations" / "instances_val2017.json", images, annotations
    )
    assert images.is_symlink() and images.resolve() == (shared / "val2017").resolve()
    assert annotations.is_symlink() and annotations.read_text() == "{}"
    assert (images / "1.jpg").read_bytes() == b"jpg"
    assert not (tmp_path / "data" / "coco").is_symlink()
    # relinking (a changed root) replaces the links
    other = shared.parent / "other"
    (other / "val").mkdir(parents=True)
    (other / "val.json").write_text("[]")
    link_split(other / "val", other / "val.json", images, annotations)
    assert annotations.read_text() == "[]"


@pytest.mark.parametrize(
    ("images", "annotations", "message"),
    [
        ("nope", "annotations/instances_val2017.json", "images folder not found"),
        ("val2017", "annotations/nope.json", "annotation file not found"),
        ("val2017", "val2017", "annotation file not found"),
    ],
)
def test_layout_problems_name_the_path(
    shared: Path, tmp_path: Path, images: str, annotations: str, message: str
) -> None:
    with pytest.raises(PipelineError, match=message) as info:
        link_split(shared / images, shared / annotations, *links(tmp_path))
    assert str(shared) in str(info.value)


def test_never_replaces_real_data(shared: Path, tmp_path: Path) -> None:
    images, annotations = links(tmp_path)
    images.mkdir(parents=True)
    (images / "mine.jpg").write_bytes(b"x")
    with pytest.raises(PipelineError, match="exists and is not a link"):
        link_split(
            shared / "val2017",
            shared / "annotations" / "instances_val2017.json",
            images,
            annotations,
        )
    assert (images / "mine.jpg").exists()


def test_dataset_folder_must_not_be_a_link(shared: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "coco").symlink_to(shared)
    with pytest.raises(PipelineError, match="is a link; the pipeline writes its links"):
        link_split(
            shared / "val2017", shared / "annotations" / "instances_val2017.json", *links(tmp_path)
        )


def test_cli(shared: Path, tmp_path: Path) -> None:
    images, annotations = links(tmp_path)
    args = ["--images", str(shared / "val2017"), "--annotations", str(shared / "nope.json")]
    args += ["--images-link", str(images), "--annotations-link", str(annotations)]
    bad = run_script("link_dataset.py", args)
    assert bad.returncode == 2 and "annotation file not found" in bad.stderr
    args[3] = str(shared / "annotations" / "instances_val2017.json")
    assert run_script("link_dataset.py", args).returncode == 0
    assert images.is_symlink()
