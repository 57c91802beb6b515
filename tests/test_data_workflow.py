"""The data rules through the real snakemake CLI: download (loopback HTTP and file:// URLs),
existing folders, validation stopping the run, and reruns that do nothing when they should."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from maskrcnn_pipeline.data.synthetic import generate_synthetic_dataset
from tests.support.http_server import FaultyServer
from tests.support.images import noise
from tests.support.paths import REPO, TESTS_DATA
from tests.support.workflow import copy_workflow, run_snakemake

pytestmark = pytest.mark.slow

WEIGHTS = os.urandom(50_000)


def job_counts(workdir: Path, *targets: str) -> dict[str, int]:
    """Rules a dry run would execute, with their job counts ('all' left out)."""
    result = run_snakemake(workdir, "--dry-run", *targets)
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    rows = re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE)
    return {rule: int(count) for rule, count in rows if rule not in ("all", "job")}


def write_config(workdir: Path, datasets: dict, **top: object) -> None:
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    config["datasets"] = datasets
    config["runs"]["tiny"]["dataset"] = next(iter(datasets))
    config.update(top)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small COCO-format dataset (generated) on 'shared storage', and archives of it."""
    root = tmp_path_factory.mktemp("shared")
    generate_synthetic_dataset(
        root / "coco", splits={"train": 4, "val": 2}, image_size=48, max_object_size=30, seed=3
    )  # seed 3: every category in train, as validation wants of a split a run trains on
    with zipfile.ZipFile(root / "images.zip", "w") as zf:
        for path in sorted((root / "coco").glob("*/*.jpg")):
            zf.write(path, path.relative_to(root / "coco").as_posix())
    with tarfile.open(root / "annotations.tgz", "w:gz") as tar:
        tar.add(root / "coco" / "annotations", arcname="annotations")
    (root / "weights.pth").write_bytes(WEIGHTS)
    return root


@pytest.fixture
def server(source: Path) -> Iterator[FaultyServer]:
    with FaultyServer({"images.zip": source / "images.zip", "w.pth": source / "weights.pth"}) as s:
        yield s


# The annotations archive unpacks into source/: data/mini/annotations/<split>.json is where
# the prepared copies go (config.py refuses a split whose file would be one).
DOWNLOAD_SPLITS = {
    "train": {"images": "train", "annotations": "source/annotations/train.json"},
    "val": {"images": "val", "annotations": "source/annotations/val.json"},
}


def download_config(workdir: Path, source: Path, server: FaultyServer, **top: object) -> None:
    datasets = {
        "mini": {
            "source": "download",
            "files": {
                "images.zip": {"url": server.url("images.zip"), "md5": md5(source / "images.zip")},
                "annotations.tgz": {
                    "url": (source / "annotations.tgz").as_uri(),
                    "sha256": hashlib.sha256((source / "annotations.tgz").read_bytes()).hexdigest(),
                    "unpack": "source",
                },
            },
            "splits": DOWNLOAD_SPLITS,
        }
    }
    weights = {
        "w.pth": {
            "url": server.url("w.pth"),
            "sha256_prefix": hashlib.sha256(WEIGHTS).hexdigest()[:8],
        }
    }
    write_config(workdir, datasets, weights=weights, **top)


def test_default_config_plans_the_whole_coco_chain(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    shutil.copy2(REPO / "config.yaml", workdir / "config.yaml")
    assert job_counts(workdir) == {
        "fetch": 3,
        "fetch_weights": 1,
        "unpack": 3,
        "prepare": 2,
        "validate": 1,
        "record_dataset": 1,
        "train": 1,
        "predict": 1,
        "evaluate": 1,
        "report": 1,
        "compare": 1,
    }
    plan = run_snakemake(workdir, "--dry-run", "--printshellcmds").stdout
    assert "--md5 cced6f7f71b7629ddf16f17bbcfab6b2" in plan
    assert "--sha256-prefix 0676ba61 --out data/weights/resnet50-0676ba61.pth" in plan
    assert "coco_annotations_minival.tgz" not in plan  # optional, disabled by default


def test_download_dataset_is_fetched_unpacked_validated_and_never_redone(
    tmp_path: Path, source: Path, server: FaultyServer
) -> None:
    workdir = copy_workflow(tmp_path)
    download_config(workdir, source, server)
    targets = ("data/mini/validation.json", "data/weights/w.pth")
    run_snakemake(workdir, *targets)
    mini = workdir / "data" / "mini"
    assert sorted(p.name for p in mini.iterdir()) == [
        ".unpacked",
        "annotations",
        "source",
        "train",
        "val",
        "validation.json",
    ]
    report = json.loads((mini / "validation.json").read_text())
    assert report["valid"] and report["splits"]["train"]["counts"]["images"] == 4
    assert (workdir / "data" / "weights" / "w.pth").read_bytes() == WEIGHTS
    assert (workdir / "data" / "downloads" / "annotations.tgz").is_file()
    assert (workdir / "results" / "logs" / "fetch" / "images.zip.log").is_file()
    requests = len(server.requests)

    assert job_counts(workdir, *targets) == {}  # nothing reruns when the outputs exist
    # editing the download code does not fetch again; editing the unpack code unpacks again
    fetch_py = workdir / "maskrcnn_pipeline" / "data" / "fetch.py"
    fetch_py.write_text(fetch_py.read_text() + "\n# edited\n")
    assert job_counts(workdir, *targets) == {}
    # how a download is attempted is operational: no new download for other retries
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config.setdefault("download", {}).update(retries=7, timeout=5.0, max_unknown_size_gb=1.0)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert job_counts(workdir, *targets) == {}
    unpack_py = workdir / "scripts" / "unpack.py"
    unpack_py.write_text(unpack_py.read_text() + "\n# edited\n")
    assert job_counts(workdir, *targets) == {"unpack": 2, "prepare": 2, "validate": 1}
    # a stricter validation setting re-validates only
    unpack_py.write_text(unpack_py.read_text().replace("\n# edited\n", ""))
    run_snakemake(workdir, "--touch", *targets)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["datasets"]["mini"]["validation"] = {"bbox_tolerance": 0.5}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert job_counts(workdir, *targets) == {"validate": 1}
    assert len(server.requests) == requests  # dry runs never touch the network


def test_mirror_replaces_the_origin(tmp_path: Path, source: Path, server: FaultyServer) -> None:
    workdir = copy_workflow(tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("images.zip", "annotations.tgz"):
        shutil.copy2(source / name, mirror / name)
    shutil.copy2(source / "weights.pth", mirror / "w.pth")
    download_config(workdir, source, server, download={"mirror": mirror.as_uri()})
    run_snakemake(workdir, "data/mini/validation.json", "data/weights/w.pth")
    assert server.requests == []  # everything came from the mirror
    assert json.loads((workdir / "data" / "mini" / "validation.json").read_text())["valid"]


def test_bad_download_stops_before_unpacking(tmp_path: Path, source: Path, server: FaultyServer):
    workdir = copy_workflow(tmp_path)
    download_config(workdir, source, server)
    server.faults.corrupt_at = 100
    result = run_snakemake(workdir, "data/mini/validation.json", check=False)
    assert result.returncode != 0
    downloads = workdir / "data" / "downloads"
    assert not (downloads / "images.zip").exists() and (downloads / "images.zip.corrupt").exists()
    log = (workdir / "results" / "logs" / "fetch" / "images.zip.log").read_text()
    assert "checksum mismatch" in log and md5(source / "images.zip") in log
    assert not (workdir / "data" / "mini" / "train").exists()


def folder_config(workdir: Path, root: Path) -> None:
    splits = {
        "train": {"images": "train", "annotations": "annotations/train.json"},
        "val": {"images": str(root / "val"), "annotations": "annotations/val.json"},
    }
    write_config(workdir, {"shared": {"source": "folder", "root": str(root), "splits": splits}})


def test_existing_folder_is_linked_validated_and_not_redone(tmp_path: Path, source: Path) -> None:
    shared = tmp_path / "cluster" / "coco"
    shutil.copytree(source / "coco", shared)
    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    folder_config(workdir, shared)
    run_snakemake(workdir, "data/shared/validation.json")
    data = workdir / "data" / "shared"
    assert data.is_dir() and not data.is_symlink()
    assert (data / "train").is_symlink() and (data / "train").resolve() == shared / "train"
    link = data / "annotations" / "source" / "val.json"
    assert link.resolve() == shared / "annotations" / "val.json"
    prepared = data / "annotations" / "val.json"  # what the later rules read: a copy
    assert not prepared.is_symlink() and json.loads(prepared.read_text())["images"]
    assert job_counts(workdir, "data/shared/validation.json") == {}
    # the annotations changed on the shared storage: validated again (and so is what follows)
    val = shared / "annotations" / "val.json"
    val.write_text(json.dumps({**json.loads(val.read_text()), "info": {"version": "2"}}))
    assert job_counts(workdir, "data/shared/validation.json") == {"prepare": 1, "validate": 1}
    assert job_counts(workdir) == {
        "prepare": 1,
        "validate": 1,
        "record_dataset": 1,
        "train": 1,
        "predict": 1,
        "evaluate": 1,
        "report": 1,
        "compare": 1,
    }


def test_invalid_dataset_stops_the_pipeline_before_training(tmp_path: Path, source: Path) -> None:
    shared = tmp_path / "cluster" / "coco"
    shutil.copytree(source / "coco", shared)
    train = json.loads((shared / "annotations" / "train.json").read_text())
    train["annotations"][0]["bbox"] = [40, 40, 30, 30]
    (shared / "annotations" / "train.json").write_text(json.dumps(train))
    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    folder_config(workdir, shared)
    result = run_snakemake(workdir, check=False)
    assert result.returncode != 0
    log = (workdir / "results" / "logs" / "validate" / "shared.log").read_text()
    assert "bbox_outside_image: 1" in log
    assert f"annotation id {train['annotations'][0]['id']}" in log
    assert str(shared / "annotations" / "train.json") in log  # the user's file, not the link
    assert not (workdir / "data" / "shared" / "validation.json").exists()
    assert (workdir / "data" / "shared" / "validation.errors.json").is_file()
    assert not (workdir / "results" / "tiny").exists()  # training never started


def test_a_data_error_in_training_is_not_trained_into_again_by_the_retries(
    tmp_path: Path, source: Path
) -> None:
    """An image whose pixels are damaged inside the file passes the default (header and
    end) validation and fails training's decode: training fails once, naming the file; the
    rule's two retries stop at once instead of training into it again."""
    shared = tmp_path / "cluster" / "coco"
    shutil.copytree(source / "coco", shared)
    record = json.loads((shared / "annotations" / "train.json").read_text())["images"][0]
    image = shared / "train" / record["file_name"]
    noise(record["width"], record["height"]).save(image, format="PNG")
    raw = bytearray(image.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the pixel data: header and IEND intact
    image.write_bytes(bytes(raw))
    (tmp_path / "wf").mkdir()
    workdir = copy_workflow(tmp_path / "wf")
    folder_config(workdir, shared)
    result = run_snakemake(workdir, "results/tiny/train/model_final.pth", check=False)
    assert result.returncode != 0
    assert result.stderr.count("Error in rule train") == 3, "three attempts"
    recorded = json.loads((workdir / "results" / "tiny" / "train" / "data_error.json").read_text())
    assert f"{record['file_name']}: cannot decode image" in recorded["message"]
    # Snakemake starts each attempt's log afresh: this is the last attempt's
    log = (workdir / "results" / "logs" / "train" / "tiny.log").read_text()
    assert "attempt 3 not started" in log and recorded["message"] in log
    assert "training images" not in log and "Traceback" not in log
