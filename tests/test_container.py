"""containers/maskrcnn.def, read as Apptainer would, and the helpers that build and record it.

The image itself is never built here (no Apptainer on these machines): these tests check the
definition's header and sections, its pins against pyproject.toml, its %test script on this
machine's Python, and our build/record code against the apptainer test double.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from spython.main.parse.parsers import SingularityParser

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.provenance import IMAGE_INFO_ENV, container_info, sha256_file
from maskrcnn_pipeline.workflow import images as container
from maskrcnn_pipeline.workflow.config import load_schema
from tests.conftest import BIN, REPO
from tests.support.container import DOUBLE, Apptainer, pyproject, pyproject_pins

DEFINITION = REPO / "containers" / "maskrcnn.def"
#: Pins the image must not install: NGC's own CUDA builds of torch and torchvision stay, and
#: snakemake (with its plugins) runs on the host.
NOT_IN_IMAGE = re.compile(r"^(torch|torchvision|snakemake.*)$")


def sections(text: str) -> dict[str, str]:
    """The definition's %sections by name; the header under ''."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        match = re.match(r"^%(\w+)\s*$", line)
        if match:
            current = match.group(1)
            if current in found:
                raise AssertionError(f"section %{current} appears twice")
            found[current] = []
        else:
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def body_lines(section: str) -> list[str]:
    """Non-blank, non-comment lines of a section, stripped."""
    return [
        line.strip()
        for line in section.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def arguments() -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in body_lines(sections(DEFINITION.read_text())["arguments"])
    )


def definition_pins() -> dict[str, str]:
    post = sections(DEFINITION.read_text())["post"]
    block = re.search(r'PINS="(.*?)"', post, flags=re.DOTALL)
    assert block, "%post has no PINS list"
    return dict(pin.split("==") for pin in block.group(1).split())


def test_spython_parses_the_definition_header_and_sections() -> None:
    recipe = SingularityParser(str(DEFINITION)).recipe
    assert list(recipe) == ["spython-base"]  # one stage
    layer = recipe["spython-base"]
    # spython lower-cases the From value; the templated base is what it must be
    assert layer.fromHeader == "{{ base_image }}"
    labels = dict(label.split(" ", 1) for label in layer.labels)
    assert labels["org.opencontainers.image.version"] == "{{ VERSION }}"
    assert labels["org.opencontainers.image.base.name"] == "{{ BASE_IMAGE }}"
    environment = dict(entry.split("=", 1) for entry in layer.environ)
    assert environment["PYTHONNOUSERSITE"] == "1"
    assert environment["MPLBACKEND"] == "Agg"
    assert any("pip install" in line for line in layer.install)
    assert layer.test  # %test became the recipe's test script


def test_header_bootstraps_from_docker_with_the_templated_ngc_base() -> None:
    header = body_lines(sections(DEFINITION.read_text())[""])
    assert header == ["Bootstrap: docker", "From: {{ BASE_IMAGE }}"]
    assert set(sections(DEFINITION.read_text())) == {
        "",
        "arguments",
        "post",
        "environment",
        "labels",
        "test",
        "help",
    }


def test_base_tag_is_pinned_once_in_config_yaml_the_schema_and_the_definition() -> None:
    schema_default = load_schema()["properties"]["container"]["properties"]["base"]["default"]
    config_yaml = yaml.safe_load((REPO / "config.yaml").read_text())["container"]["base"]
    assert arguments()["BASE_IMAGE"] == schema_default == config_yaml
    assert re.fullmatch(r"nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3", schema_default)
    # CUDA >= 11.8 for Hopper and Python >= 3.11 for the package: NGC 25.01 and newer
    year, month = map(int, re.search(r"(\d\d)\.(\d\d)", schema_default).groups())
    assert (year, month) >= (25, 1)


def test_version_label_is_the_project_version() -> None:
    assert arguments()["VERSION"] == pyproject()["project"]["version"]


def test_image_adds_exactly_the_pinned_packages_ngc_lacks_never_torch() -> None:
    expected = {name: version for name, version in pyproject_pins().items()}
    expected = {name: v for name, v in expected.items() if not NOT_IN_IMAGE.match(name)}
    assert definition_pins() == expected
    post = sections(DEFINITION.read_text())["post"]
    # installs only what the base lacks, constrained to the base's own versions
    assert "pip show" in post
    assert "--constraint /opt/maskrcnn/base-packages.txt" in post


def test_help_says_how_to_run_and_check_the_image() -> None:
    help_text = sections(DEFINITION.read_text())["help"]
    assert "apptainer exec --nv" in help_text
    assert "apptainer test --nv" in help_text


def run_test_section(path_dirs: list[Path]) -> subprocess.CompletedProcess[str]:
    """The definition's %test, as Apptainer runs it (/bin/sh), on this machine's Python."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), str(BIN), env.get("PATH", "")])
    return subprocess.run(
        ["/bin/sh", "-c", sections(DEFINITION.read_text())["test"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_test_section_passes_on_the_pinned_environment_without_a_gpu(tmp_path: Path) -> None:
    # A PATH without nvidia-smi: the CUDA part is skipped, the imports must all work.
    result = run_test_section([])
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU is visible here: the CUDA branch is exercised on GPU machines")
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout
    assert "CUDA check skipped" in result.stdout


@pytest.mark.slow
def test_the_test_section_fails_when_a_gpu_is_visible_but_unusable(tmp_path: Path) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("a real GPU is visible here")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n")
    fake.chmod(0o755)
    result = run_test_section([tmp_path])
    assert result.returncode != 0
    assert "a GPU is visible (nvidia-smi) but torch cannot use it" in result.stderr


# --- building and recording, against the apptainer test double ---------------------------


@pytest.fixture
def fake_apptainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Apptainer:
    """The apptainer test double first on PATH, for code that calls it in this process."""
    apptainer = Apptainer(tmp_path)
    env = apptainer.env()
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("APPTAINER_DOUBLE_LOG", env["APPTAINER_DOUBLE_LOG"])
    return apptainer


def test_build_command_passes_the_base_and_fakeroot_only_without_root() -> None:
    command = container.build_command(
        "apptainer", "containers/maskrcnn.def", "out.sif", base="nvcr.io/x/y:1", fakeroot=True
    )
    assert command == [
        "apptainer",
        "build",
        "--fakeroot",
        "--build-arg",
        "BASE_IMAGE=nvcr.io/x/y:1",
        "out.sif",
        "containers/maskrcnn.def",
    ]
    rootful = container.build_command("apptainer", "d.def", "o.sif", base="b:1", fakeroot=False)
    assert "--fakeroot" not in rootful


def test_record_lives_in_results_container_named_after_the_image() -> None:
    assert container.image_record_path("results/container/maskrcnn.sif") == (
        "results/container/maskrcnn.json"
    )
    assert container.image_record_path("/site/images/pytorch-2.sif") == (
        "results/container/pytorch-2.json"
    )


def test_build_image_writes_the_image_atomically_and_its_record(
    fake_apptainer: Apptainer, tmp_path: Path
) -> None:
    image, record, log = tmp_path / "c" / "maskrcnn.sif", tmp_path / "c.json", tmp_path / "b.log"
    data = container.build_image(DEFINITION, image, record, base="nvcr.io/x/y:1", log=log)
    (build,) = fake_apptainer.calls("build")
    assert build[-1] == str(DEFINITION)
    assert ("--fakeroot" in build) == (os.geteuid() != 0)
    assert "BASE_IMAGE=nvcr.io/x/y:1" in build
    assert Path(build[-2]).parent == image.parent and build[-2].endswith(".tmp")
    assert sorted(p.name for p in image.parent.iterdir()) == ["maskrcnn.sif"]  # no leftovers
    assert json.loads(record.read_text()) == data
    assert data["sha256"] == sha256_file(image)
    assert data["base"] == "nvcr.io/x/y:1"
    assert data["apptainer_version"] == "apptainer version 1.4.5"
    assert data["built_at"] and data["definition_sha256"] == sha256_file(DEFINITION)
    assert "$ apptainer build" in log.read_text()


def test_a_failed_build_leaves_no_image_and_names_the_log(
    fake_apptainer: Apptainer, tmp_path: Path
) -> None:
    image = tmp_path / "maskrcnn.sif"
    with pytest.raises(PipelineError, match=r"failed .* its output is in") as error:
        container.build_image(
            tmp_path / "missing.def", image, tmp_path / "r.json", base="b:1", log=tmp_path / "l"
        )
    assert str(tmp_path / "l") in str(error.value)
    assert not image.exists() and not list(tmp_path.glob("*.tmp"))
    assert "no definition file" in (tmp_path / "l").read_text()


def test_describe_image_records_a_site_image_without_building(
    fake_apptainer: Apptainer, tmp_path: Path
) -> None:
    site = tmp_path / "site.sif"
    site.write_bytes(b"site image")
    data = container.describe_image(site, tmp_path / "site.json", log=tmp_path / "log")
    assert data["sha256"] == sha256_file(site) and data["base"] is None
    assert not fake_apptainer.calls("build")
    with pytest.raises(PipelineError, match=r"container\.image: .* does not exist"):
        container.describe_image(tmp_path / "nope.sif", tmp_path / "n.json", log=tmp_path / "l")


def test_without_apptainer_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PipelineError, match=r"container\.build: false"):
        container.apptainer_binary()


def test_exec_prefix_is_the_call_snakemake_makes_with_nv_once() -> None:
    prefix = container.exec_prefix("img.sif", binary="apptainer", args="--nv -B /d", home="/w")
    assert prefix == ["apptainer", "exec", "--home", "/w", "--nv", "-B", "/d", "img.sif"]
    assert container.exec_prefix("i.sif", binary="apptainer", args="", home="/w")[4] == "--nv"


def test_provenance_has_the_digest_in_a_container_and_null_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "maskrcnn.json"
    record.write_text(json.dumps({"sha256": "ab" * 32, "base": "nvcr.io/nvidia/pytorch:1"}))
    for name in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", IMAGE_INFO_ENV):
        monkeypatch.delenv(name, raising=False)
    assert container_info() == {"image": None, "digest": None, "base": None}
    monkeypatch.setenv(IMAGE_INFO_ENV, str(record))
    assert container_info()["digest"] is None  # not in a container: nothing to claim
    monkeypatch.setenv("APPTAINER_CONTAINER", "/w/results/container/maskrcnn.sif")
    assert container_info() == {
        "image": "/w/results/container/maskrcnn.sif",
        "digest": "sha256:" + "ab" * 32,
        "base": "nvcr.io/nvidia/pytorch:1",
    }
    record.unlink()
    broken = container_info()
    assert broken["digest"] is None and str(record) in broken["record_error"]


def test_double_is_executable_and_reports_a_version() -> None:
    result = subprocess.run(
        [sys.executable, str(DOUBLE), "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "apptainer version 1.4.5"
    assert os.access(DOUBLE, os.X_OK)


def test_unset_profile_variables_are_found() -> None:
    assert container.unset_variables("--nv --bind $MASKRCNN_DATA") == ["MASKRCNN_DATA"]
    assert container.unset_variables("--nv -B ${DATA}:/d") == ["DATA"]
    assert container.unset_variables("--nv --bind /datasets") == []
