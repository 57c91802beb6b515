# Helpers shared by all rules: config validation, paths, params and code inputs.
# No torch here: this file is read on every snakemake call.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from maskrcnn_pipeline.cluster import train_resources
from maskrcnn_pipeline.config import (
    predict_settings,
    run_config,
    split_paths,
    train_settings,
    validate_config,
)
from maskrcnn_pipeline.container import (
    apptainer_binary,
    build_image,
    describe_image,
    exec_prefix,
    image_record_path,
    unset_variables,
)
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.provenance import IMAGE_INFO_ENV

try:
    validate_config(config)
except PipelineError as error:
    raise WorkflowError(str(error)) from None


PACKAGE = "maskrcnn_pipeline"
#: The conda environment of every rule (`--use-conda`), relative to rules/.
ENV = "../envs/maskrcnn.yaml"

#: The Apptainer image of the compute rules (`container:`) and its JSON record (digest, base).
IMAGE = config["container"]["image"]
IMAGE_RECORD = image_record_path(IMAGE)
#: Whether jobs run in the image: --use-singularity, --use-apptainer or --sdm apptainer (the
#: profiles set it). Only then is the image built and listed as an input of every job.
_DEPLOYMENT = getattr(workflow, "deployment_settings", None)
IN_CONTAINER = _DEPLOYMENT is not None and (
    DeploymentMethod.APPTAINER in _DEPLOYMENT.deployment_method
)
#: The `container:` of every compute rule: the image when jobs run in it, else none, so that
#: without --use-singularity the container settings change nothing (no rerun, no file read).
CONTAINER = IMAGE if IN_CONTAINER else None
#: --apptainer-args: binds and --nv, also for the jobs that start the image themselves.
APPTAINER_ARGS = _DEPLOYMENT.apptainer_args if IN_CONTAINER else ""

# A profile's `$VAR` that is not set stays literally in the arguments (profiles/local binds
# $MASKRCNN_DATA): say so now rather than as a failed mount in the first job.
_unset = unset_variables(APPTAINER_ARGS)
if _unset:
    raise WorkflowError(
        f"--apptainer-args {APPTAINER_ARGS!r}: ${_unset[0]} is not set. Export it first, "
        f"e.g. `export {_unset[0]}=/path/to/datasets` (the folder your config's dataset "
        "paths are in; $PWD/data for data inside this checkout), see README.md."
    )

# Jobs import the package from this checkout, whatever environment they run in (venv, conda
# env, container with the checkout bound): put it first on their PYTHONPATH. In the image, they
# also learn where the image's record is, for their provenance.
shell.prefix(
    # braces doubled: Snakemake formats the prefix like any shell command
    "set -euo pipefail; export PYTHONPATH="
    + workflow.basedir
    + "${{PYTHONPATH:+:$PYTHONPATH}}; "
    + (f"export {IMAGE_INFO_ENV}={IMAGE_RECORD}; " if IN_CONTAINER else "")
)


def code(script, *modules):
    """The script of a step plus the package modules it uses (editing any of them reruns it)."""
    files = [f"scripts/{script}.py"]
    for module in modules:
        path = Path(PACKAGE, module)
        files += (
            sorted(map(str, path.glob("*.py"))) if path.is_dir() else [f"{path}.py"]
        )
    return files


def dataset_of(run):
    return run_config(config, run)["dataset"]


def split_of(run, key):
    """Images folder and annotation file of a run's train_split or eval_split."""
    settings = run_config(config, run)
    return split_paths(config, settings["dataset"], settings[key])


def eval_split_inputs(wildcards):
    dataset = dataset_of(wildcards.run)
    return split_paths(config, dataset, wildcards.split)


def as_json(settings):
    """Params are compared as values between runs: a sorted JSON string is stable."""
    return json.dumps(settings, sort_keys=True)


def run_reports():
    return [f"results/{run}/report/summary.md" for run in config["runs"]]


def synthetic_args(wildcards):
    """The generator's options as CLI flags; as params, a changed option regenerates the data."""
    settings = config["datasets"][wildcards.dataset]["synthetic"]
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in sorted(settings.items())
    )


def train_inputs(wildcards):
    paths = split_of(wildcards.run, "train_split")
    return {
        "images": paths["images"],
        "annotations": paths["annotations"],
        "code": code(
            "train",
            "training",
            "engine",
            "hooks",
            "model",
            "solver",
            "checkpoint",
            "distributed",
            "data/coco",
            "data/sampler",
            "data/transforms",
        ),
    }


def train_threads(wildcards):
    settings = run_config(config, wildcards.run)
    return max(
        1,
        settings["threads"],
        settings["dataloader"]["workers"] * max(1, settings["gpus"]),
    )


def predict_inputs(wildcards):
    paths = eval_split_inputs(wildcards)
    return {
        "model": f"results/{wildcards.run}/train/model_final.pth",
        "images": paths["images"],
        "annotations": paths["annotations"],
        "code": code("predict", "predict", "model", "data/coco"),
    }


def report_inputs(wildcards):
    split = run_config(config, wildcards.run)["eval_split"]
    paths = split_of(wildcards.run, "eval_split")
    eval_dir = f"results/{wildcards.run}/eval/{split}"
    return {
        "metrics_log": f"results/{wildcards.run}/train/metrics.jsonl",
        "provenance": f"results/{wildcards.run}/train/provenance.json",
        "metrics": f"{eval_dir}/metrics.json",
        "predictions": f"{eval_dir}/predictions.json",
        "per_category": f"{eval_dir}/per_category.csv",
        "pr_curves": f"{eval_dir}/pr_curves.csv",
        "images": paths["images"],
        "annotations": paths["annotations"],
        "code": code("report", "report"),
    }


def image_inputs(wildcards):
    """The image and its record, as inputs of every job that runs in it.

    Snakemake does not infer that a local .sif is made by the build_image job, so the edge
    must be an input. Without --use-singularity there is none, so nothing about containers
    runs.
    """
    return {"image": IMAGE, "image_record": IMAGE_RECORD} if IN_CONTAINER else {}


def train_container(wildcards):
    """The image, for a single-node training; none for a multi-node one.

    A multi-node job starts the image itself on every node (`srun ... apptainer exec`,
    the `mpi` resource) because srun is not inside the image.
    """
    return CONTAINER if run_config(config, wildcards.run)["nodes"] == 1 else None


def train_resource(name):
    """One of the train job's resources, from its run's gpus, nodes and resources keys."""

    def resource(wildcards, threads):
        settings = run_config(config, wildcards.run)
        in_image = ()
        if IN_CONTAINER and settings["nodes"] > 1:
            in_image = exec_prefix(
                IMAGE, binary=apptainer_binary(), args=APPTAINER_ARGS
            )
        return train_resources(settings, threads=threads, container=in_image)[name]

    return resource
