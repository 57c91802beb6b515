"""containers/nvidia-maskrcnn.def, read as Apptainer would: NVIDIA's pytorch/Dockerfile as a
definition (never built here: no Apptainer on these machines), and the build of several
images by one rule."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from spython.main.parse.parsers import SingularityParser

from maskrcnn_pipeline.provenance import sha256_file
from maskrcnn_pipeline.workflow import images as container
from maskrcnn_pipeline.workflow.config import load_schema
from tests.conftest import REPO
from tests.support.container import Apptainer
from tests.test_container import body_lines, fake_apptainer, sections  # noqa: F401 (fixture)

DEFINITION = REPO / "containers" / "nvidia-maskrcnn.def"


def text() -> str:
    return DEFINITION.read_text()


def arguments() -> dict[str, str]:
    return dict(line.split("=", 1) for line in body_lines(sections(text())["arguments"]))


def templated(section: str) -> str:
    """A section with the build arguments filled in, as Apptainer does before running it."""
    values = arguments()
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)], sections(text())[section])


def test_spython_parses_it_and_it_follows_their_dockerfile() -> None:
    layer = SingularityParser(str(DEFINITION)).recipe["spython-base"]
    assert layer.fromHeader == "{{ base_image }}"
    environment = dict(entry.split("=", 1) for entry in layer.environ)
    assert environment["OMP_NUM_THREADS"] == "1"  # their ENV
    labels = dict(label.split(" ", 1) for label in layer.labels)
    assert labels["org.opencontainers.image.revision"] == "{{ DLE_COMMIT }}"
    assert layer.test
    assert body_lines(sections(text())[""]) == ["Bootstrap: docker", "From: {{ BASE_IMAGE }}"]


def test_defaults_equal_the_config_and_the_schema() -> None:
    schema = load_schema()["properties"]["container"]["properties"]["nvidia"]["properties"]
    args = arguments()
    assert args["BASE_IMAGE"] == schema["base"]["default"] == "nvcr.io/nvidia/pytorch:21.12-py3"
    assert args["DLE_COMMIT"] == schema["source_commit"]["default"]
    assert re.fullmatch(r"[0-9a-f]{40}", args["DLE_COMMIT"])
    assert args["DLE_REPOSITORY"] == schema["source_repository"]["default"]
    nvidia = yaml.safe_load((REPO / "configs" / "nvidia.yaml").read_text())
    assert nvidia["runs"]["r50_fpn_1x_nvidia"]["engine"] == "nvidia"


def test_their_pip_extras_pinned_their_source_at_the_commit_their_extension_built() -> None:
    post = sections(text())["post"]
    for pin in (
        "mlperf-compliance==0.0.10",
        "opencv-python==4.4.0.42",
        "git+https://github.com/NVIDIA/dllogger@v1.0.0#egg=dllogger",
        "yacs==0.1.8",
    ):
        assert pin in post
    assert 'git fetch -q --depth 1 origin "{{ DLE_COMMIT }}"' in post
    assert 'test "$(git rev-parse FETCH_HEAD)" = "{{ DLE_COMMIT }}"' in post
    assert "PyTorch/Segmentation/MaskRCNN/pytorch/. /workspace/object_detection/" in post
    assert "python -m pip install --no-cache-dir -e ." in post
    assert "mkdir -p /datasets/data /results" in post


def test_its_scripts_are_valid_shell() -> None:
    for section in ("post", "test"):
        result = subprocess.run(
            ["sh", "-n"], input=templated(section), capture_output=True, text=True
        )
        assert result.returncode == 0, (section, result.stderr)
    assert "9a36fc3197bfab7536e0e46c360716973f3f2f40" in templated("post")


def test_the_test_section_checks_their_forks_and_the_gpu() -> None:
    test = sections(text())["test"]
    assert "apex pycocotools" in test and '"use_ext"' in test
    assert "maskrcnn_benchmark._C" in test and "nvidia-smi" in test


def test_builds_pass_every_build_argument(fake_apptainer: Apptainer, tmp_path: Path) -> None:  # noqa: F811
    args = {"DLE_REPOSITORY": "file:///mirror/dle", "DLE_COMMIT": "a" * 40}
    command = container.build_command(
        "apptainer", DEFINITION, "o.sif", base="b:1", fakeroot=False, build_args=args
    )
    assert command == [
        "apptainer",
        "build",
        *("--build-arg", "BASE_IMAGE=b:1"),
        *("--build-arg", "DLE_REPOSITORY=file:///mirror/dle"),
        *("--build-arg", f"DLE_COMMIT={'a' * 40}"),
        "o.sif",
        str(DEFINITION),
    ]
    image, record = tmp_path / "nvidia-maskrcnn.sif", tmp_path / "nvidia-maskrcnn.json"
    data = container.build_image(
        DEFINITION, image, record, base="b:1", build_args=args, log=tmp_path / "log"
    )
    assert json.loads(record.read_text()) == data
    assert data["build_args"] == args and data["sha256"] == sha256_file(image)
    assert f"DLE_COMMIT={'a' * 40}" in image.read_text()  # the double records its arguments


def test_jobs_that_start_an_image_can_bind_per_job() -> None:
    prefix = container.exec_prefix(
        "n.sif",
        binary="apptainer",
        args="--nv -B /d",
        home="/w",
        binds=["/w/data/x:/datasets/data:ro"],
    )
    assert prefix == [
        *("apptainer", "exec", "--home", "/w", "--nv", "-B", "/d"),
        *("--bind", "/w/data/x:/datasets/data:ro", "n.sif"),
    ]
