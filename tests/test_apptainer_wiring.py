"""Our Apptainer wiring, checked with a stand-in for `apptainer`: NOT the image itself.

A real `snakemake --profile profiles/local` (= --use-singularity, --nv, the data bind) runs
the tiny pipeline with tests/support/doubles/apptainer.py first on PATH. The double records
every call and runs the jobs' commands on the host, so these tests see exactly the
`apptainer build` and
`apptainer exec ... --nv ... maskrcnn.sif` command lines Snakemake issues, and that the image
is built once, listed as every job's input and recorded in provenance. Whether the image
itself builds and runs is not checked here: there is no Apptainer on these machines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from tests.support.container import Apptainer, executed_rules, rule_of, workflow_copy
from tests.support.paths import BIN
from tests.support.workflow import tool_env

pytestmark = pytest.mark.slow

IMAGE = "results/container/maskrcnn.sif"
BASE = "nvcr.io/nvidia/pytorch:26.06-py3"
#: The pipeline's core jobs on the tiny config (more may run, e.g. validation or comparison).
CORE = {"generate_synthetic_dataset", "train", "predict", "evaluate", "report"}


class Run(NamedTuple):
    workdir: Path
    apptainer: Apptainer
    output: str


def snakemake(
    workdir: Path, apptainer: Apptainer, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "snakemake"), "--cores", "1", *args]
    result = subprocess.run(
        command, cwd=workdir, env=apptainer.env(), capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned(result: subprocess.CompletedProcess[str]) -> set[str]:
    """Rules a dry run would execute (its 'Job stats' table), 'all' left out."""
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return set()
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return set(re.findall(r"^(\w+)\s+\d+\s*$", table, flags=re.MULTILINE)) - {"all", "job"}


def tiny_workflow(root: Path) -> Path:
    return workflow_copy(root / "wf")


@pytest.fixture(scope="module")
def containerized(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The tiny pipeline run once through profiles/local, with the double as apptainer."""
    root = tmp_path_factory.mktemp("containerized")
    workdir = tiny_workflow(root)
    apptainer = Apptainer(root)
    result = snakemake(workdir, apptainer, "--profile", "profiles/local")
    return Run(workdir, apptainer, result.stdout + result.stderr)


@pytest.fixture
def done(containerized: Run, tmp_path: Path) -> tuple[Path, Apptainer]:
    """A private copy of the finished run (timestamps kept) that a test may change."""
    copy = tmp_path / "wf"
    shutil.copytree(containerized.workdir, copy, symlinks=True)
    return copy, Apptainer(tmp_path)


def plan(workdir: Path, apptainer: Apptainer, *args: str) -> set[str]:
    return planned(snakemake(workdir, apptainer, "--profile", "profiles/local", "-n", *args))


def test_the_image_is_built_once_from_the_definition_with_the_pinned_base(
    containerized: Run,
) -> None:
    workdir, apptainer, _ = containerized
    builds = apptainer.calls("build")
    assert len(builds) == 1
    *options, target, definition = builds[0][1:]
    expected_options = ["--build-arg", f"BASE_IMAGE={BASE}"]
    if os.geteuid() != 0:
        expected_options.insert(0, "--fakeroot")
    assert options == expected_options
    assert definition == "containers/maskrcnn.def"
    # built beside its final name, then renamed into place
    assert Path(target).parent == workdir / "results" / "container"
    assert Path(target).name.startswith(".maskrcnn.sif.") and target.endswith(".tmp")


def test_every_job_runs_in_the_image_with_gpus_and_the_data_bound(containerized: Run) -> None:
    workdir, apptainer, output = containerized
    ran_in_image = Counter()
    for argv in apptainer.calls("exec"):
        image_at = argv.index(IMAGE)
        options, (shell, flag, command) = argv[1:image_at], argv[image_at + 1 :]
        assert options[:2] == ["--home", str(workdir)]
        assert "--nv" in options
        assert options[options.index("--nv") + 1 : options.index("--nv") + 3] == [
            "--bind",
            str(apptainer.data),
        ]
        assert (shell, flag) == ("bash", "-c")
        assert "export MASKRCNN_IMAGE_INFO=results/container/maskrcnn.json;" in command
        ran_in_image[rule_of(command)] += 1
    executed = executed_rules(output)
    assert executed["build_image"] == 1
    del executed["build_image"]  # it builds the image: the one job on the host
    assert set(executed) >= CORE
    assert ran_in_image == executed  # every other job, once, in the image


def test_the_image_digest_reaches_the_run_provenance(containerized: Run) -> None:
    workdir = containerized.workdir
    record = json.loads((workdir / "results" / "container" / "maskrcnn.json").read_text())
    digest = hashlib.sha256((workdir / IMAGE).read_bytes()).hexdigest()
    assert record["sha256"] == digest
    assert record["base"] == BASE and record["apptainer_version"] == "apptainer version 1.4.5"
    provenance = json.loads((workdir / "results/tiny/train/provenance.json").read_text())
    assert provenance["container"] == {
        "image": str(workdir / IMAGE),
        "digest": f"sha256:{digest}",
        "base": BASE,
    }
    assert (workdir / "results/tiny/report/summary.md").stat().st_size > 0


def test_an_up_to_date_run_builds_nothing(done: tuple[Path, Apptainer]) -> None:
    assert plan(*done) == set()


def test_code_changes_do_not_rebuild_the_image(done: tuple[Path, Apptainer]) -> None:
    workdir, apptainer = done
    script = workdir / "scripts" / "report.py"
    script.write_text(script.read_text() + "\n# edited\n")
    planned_jobs = plan(workdir, apptainer)
    assert "report" in planned_jobs
    assert not {"build_image", "train"} & planned_jobs


def test_a_new_base_tag_rebuilds_the_image_and_reruns_every_job(
    done: tuple[Path, Apptainer],
) -> None:
    workdir, apptainer = done
    everything = plan(workdir, apptainer, "--forceall")
    assert {"build_image"} | CORE <= everything
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["container"] = {"base": "nvcr.io/nvidia/pytorch:26.05-py3"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert plan(workdir, apptainer) == everything


def test_an_edited_definition_rebuilds_the_image(done: tuple[Path, Apptainer]) -> None:
    workdir, apptainer = done
    everything = plan(workdir, apptainer, "--forceall")
    definition = workdir / "containers" / "maskrcnn.def"
    definition.write_text(definition.read_text() + "\n# edited\n")
    assert plan(workdir, apptainer) == everything


def demo_workflow(root: Path) -> Path:
    """A copy of the workflow as `make demo` runs it (profiles/demo, configs/demo.yaml)."""
    return workflow_copy(root / "demo", config=None)


def demo_plan(workdir: Path, env: dict[str, str], *args: str) -> set[str]:
    result = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/demo", "-n", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("results/container" in result.stdout + result.stderr) == bool(args)
    return planned(result)


def test_the_demo_plans_no_container_without_use_singularity(tmp_path: Path) -> None:
    # no apptainer on PATH here: a dry run would fail if anything needed it
    planned_jobs = demo_plan(demo_workflow(tmp_path), tool_env())
    assert planned_jobs >= CORE and "build_image" not in planned_jobs


def test_the_demo_with_use_singularity_plans_the_build_first(tmp_path: Path) -> None:
    workdir = demo_workflow(tmp_path)
    env = Apptainer(tmp_path).env()
    assert demo_plan(workdir, env, "--use-singularity") == demo_plan(workdir, env) | {"build_image"}


def test_a_site_image_is_recorded_not_built(tmp_path: Path) -> None:
    workdir = tiny_workflow(tmp_path)
    apptainer = Apptainer(tmp_path)
    site = tmp_path / "site" / "pytorch-site.sif"
    site.parent.mkdir()
    site.write_bytes(b"a site-provided image")
    (tmp_path / "site.yaml").write_text(
        yaml.safe_dump({"container": {"image": str(site), "build": False}})
    )
    result = snakemake(
        workdir,
        apptainer,
        "--profile",
        "profiles/local",
        "--configfile",
        "config.yaml",
        str(tmp_path / "site.yaml"),
        "--until",
        "generate_synthetic_dataset",
    )
    assert "describe_image" in result.stdout + result.stderr
    assert not apptainer.calls("build")
    assert [argv[argv.index(str(site)) - 1] for argv in apptainer.calls("exec")]  # ran in it
    record = json.loads((workdir / "results/container/pytorch-site.json").read_text())
    assert record["image"] == str(site) and record["base"] is None


def test_an_unset_data_folder_variable_stops_before_any_job(tmp_path: Path) -> None:
    workdir = tiny_workflow(tmp_path)
    apptainer = Apptainer(tmp_path)
    env = apptainer.env()
    del env["MASKRCNN_DATA"]
    result = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/local", "-n"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "$MASKRCNN_DATA is not set" in output
    assert "export MASKRCNN_DATA=" in output


def test_a_multi_node_training_launches_the_image_itself_on_every_node(tmp_path: Path) -> None:
    workdir = tiny_workflow(tmp_path)
    apptainer = Apptainer(tmp_path)
    (tmp_path / "multi.yaml").write_text(
        yaml.safe_dump({"runs": {"tiny": {"nodes": 2, "gpus": 4, "dataloader": {"workers": 4}}}})
    )
    result = snakemake(
        workdir,
        apptainer,
        "--profile",
        "profiles/slurm",
        "-n",
        "--cores",
        "64",
        "--configfile",
        "config.yaml",
        str(tmp_path / "multi.yaml"),
    )
    train = (result.stdout + result.stderr).split("rule train:", 1)[1].split("\n\n", 1)[0]
    resources = dict(
        item.split("=", 1) for item in re.search(r"resources: (.*)", train).group(1).split(", ")
    )
    assert {key: resources[key] for key in ("nodes", "gpu", "gres", "tasks", "tasks_per_gpu")} == {
        "nodes": "2",
        "gpu": "0",
        "gres": "gpu:4",
        "tasks": "2",
        "tasks_per_gpu": "0",
    }
    assert resources["mem_mb"] == str(4 * 32000) and resources["runtime"] == "720"
    assert resources["mpi"] == (
        "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=16 --kill-on-bad-exit=1"
        f" apptainer exec --home {workdir} --nv --bind {apptainer.data} {IMAGE}"
    )
