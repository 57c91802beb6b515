"""The train and predict jobs' resources, and the sbatch flags the Slurm plugin makes of them.

The one-node test cluster cannot run a multi-node job, so the multi-node form is checked
here: our resources for a run, then the plugin's own submit-command builder on them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from maskrcnn_pipeline.workflow.config import validate_config
from maskrcnn_pipeline.workflow.resources import (
    prediction_resources,
    srun_launcher,
    train_resources,
    train_threads,
)
from tests.support.paths import REPO

MINIMAL = {"datasets": {"d": {"source": "synthetic"}}, "runs": {"r": {"dataset": "d"}}}


def run(**settings) -> dict:
    config = copy.deepcopy(MINIMAL)
    config["runs"]["r"].update(settings)
    return validate_config(config)["runs"]["r"]


class FakeResources(dict):
    """What the plugin reads from a job's resources: .get() and attribute access."""

    __getattr__ = dict.__getitem__


class FakeJob:
    def __init__(self, resources: dict, threads: int) -> None:
        self.resources = FakeResources(resources)
        self.threads = threads


def sbatch_flags(resources: dict, threads: int) -> list[str]:
    params = {
        "run_uuid": "u",
        "slurm_logfile": Path("log"),
        "comment_str": "c",
        "account": "",
        "partition": "",
        "workdir": "",
    }
    job = FakeJob(resources, threads)
    # what the plugin's run_job puts together: the submit command, then the GPU flags
    return (get_submit_command(job, params) + set_gres_string(job)).split()


def test_defaults_ask_for_the_recipe_node() -> None:
    resources = train_resources(run(), threads=32)
    assert resources == {
        "runtime": 720,
        "mem_mb": 8 * 32000,
        "nodes": 1,
        "gpu": 8,
        "gres": "",
        "tasks": 1,
        "tasks_per_gpu": 0,
        "mpi": "",
    }


def test_a_single_node_gpu_run_asks_for_its_gpus_and_runs_its_command_directly() -> None:
    flags = sbatch_flags(train_resources(run(gpus=4), threads=16), threads=16)
    assert "--gpus=4" in flags and "--cpus-per-task=16" in flags
    assert "--nodes=1" in flags and "--mem" in flags and "128000" in flags
    assert not [flag for flag in flags if flag.startswith(("--gres", "--ntasks"))]


def test_a_cpu_run_asks_for_one_task_and_no_gpu() -> None:
    resources = train_resources(run(gpus=0, resources={"mem_mb_per_gpu": 2000}), threads=2)
    assert (resources["gpu"], resources["gres"], resources["mem_mb"]) == (0, "", 2000)
    flags = sbatch_flags(resources, threads=2)
    assert "--ntasks=1" in flags and not [f for f in flags if "gpu" in f]


def test_a_multi_node_run_asks_for_gpus_per_node_and_one_task_per_node() -> None:
    settings = run(gpus=4, nodes=2, resources={"runtime": 600, "mem_mb_per_gpu": 20000})
    resources = train_resources(settings, threads=24)
    assert resources["mpi"] == (
        "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=24 --kill-on-bad-exit=1"
    )
    flags = sbatch_flags(resources, threads=24)
    for flag in ("--nodes=2", "--ntasks=2", "--gres=gpu:4", "--cpus-per-task=24", "600"):
        assert flag in flags
    assert "80000" in flags  # --mem is per node: 4 GPUs x 20000 MB
    assert not [flag for flag in flags if flag.startswith(("--gpus", "--ntasks-per-gpu"))]


def test_in_the_image_the_launcher_starts_apptainer_on_every_node() -> None:
    launcher = srun_launcher(2, 8, ["apptainer", "exec", "--nv", "/w/img.sif"])
    assert launcher.endswith("--kill-on-bad-exit=1 apptainer exec --nv /w/img.sif")


@pytest.mark.parametrize("key", ["runtime", "mem_mb_per_gpu"])
def test_resources_must_be_positive(key: str) -> None:
    from maskrcnn_pipeline.errors import PipelineError

    with pytest.raises(PipelineError, match=rf"runs\.r\.resources\.{key}"):
        run(resources={key: 0})


@pytest.mark.parametrize(
    ("settings", "threads"),
    [
        ({"threads": 0, "gpus": 0, "dataloader": {"workers": 0}}, 1),
        ({"threads": 6, "gpus": 2, "dataloader": {"workers": 2}}, 6),
        ({"threads": 2, "gpus": 8, "dataloader": {"workers": 4}}, 32),
        ({"threads": 0, "gpus": 0, "dataloader": {"workers": 3}}, 3),
    ],
)
def test_a_training_job_gets_a_cpu_per_thread_or_loader_worker(settings, threads) -> None:
    assert train_threads(run(**settings)) == threads


def test_predicting_with_a_run_asks_for_its_gpus_and_their_memory() -> None:
    assert prediction_resources(run(gpus=4, resources={"mem_mb_per_gpu": 1000})) == {
        "gpu": 4,
        "mem_mb": 4000,
        "runtime": 120,
    }


def test_a_predict_job_of_a_four_gpu_run_asks_slurm_for_four_gpus() -> None:
    flags = sbatch_flags(prediction_resources(run(gpus=4)), threads=8)
    assert "--gpus=4" in flags and "--cpus-per-task=8" in flags
    assert flags[flags.index("--mem") + 1] == str(4 * 32000)


def test_resources_never_reach_the_training_settings() -> None:
    from maskrcnn_pipeline.workflow.params import train_settings

    config = validate_config(copy.deepcopy(MINIMAL))
    assert "resources" not in train_settings(config, "r")


# --- the profiles ------------------------------------------------------------------------


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def test_local_profile_runs_in_the_image_with_gpus_and_the_data_folder() -> None:
    local = profile("local")
    assert local["use-apptainer"] is True
    assert local["cores"] == "all"
    args = local["apptainer-args"].split()
    assert "--nv" in args and args[args.index("--bind") + 1] == "$MASKRCNN_DATA"
    # /dev/shm (DataLoader workers) stays the host's: no private, small one
    assert not {"--contain", "--containall", "-c", "-C"} & set(args)


def test_slurm_profile_submits_everything_with_retries_and_requeue() -> None:
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm"
    assert slurm["use-apptainer"] is True and "--nv" in slurm["apptainer-args"]
    assert slurm["retries"] >= 1 and slurm["slurm-requeue"] is True
    assert {"runtime", "mem_mb"} <= set(slurm["default-resources"])
    assert "predict" not in slurm["set-resources"]  # the run's config decides
    assert "gpu" not in slurm["set-resources"].get("evaluate", {})
    assert "train" not in slurm["set-resources"]  # the run's config decides
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    assert "# slurm_partition:" in text and "# slurm_account:" in text  # placeholders
