# What several .smk files share: the validated config, the image every compute job runs in,
# the jobs' shell prefix, and the input and params functions of more than one .smk. A helper
# that serves one .smk is in rules/helpers/<that file>.smk; logic lives in
# maskrcnn_pipeline/workflow/ (tested).
# No torch here: this file is read on every snakemake call.
import json
import re
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.provenance import IMAGE_INFO_ENV
from maskrcnn_pipeline.workflow import paths
from maskrcnn_pipeline.workflow import resources as job_resources
from maskrcnn_pipeline.workflow.code_inputs import code_inputs
from maskrcnn_pipeline.workflow.config import (
    dataset_files,
    dataset_record,
    dataset_splits,
    run_config,
    runs_of_engine,
    split_paths,
    newer_than_all,
    validate_config,
    validation_report,
)
from maskrcnn_pipeline.workflow.images import (
    apptainer_binary,
    exec_prefix,
    image_record_path,
    unset_variables,
)
from maskrcnn_pipeline.workflow.params import stage_operational, stage_params

try:
    validate_config(config)
except PipelineError as error:
    raise WorkflowError(str(error)) from None


#: The conda environment of every rule (`--use-conda`), relative to rules/.
ENV = "../envs/maskrcnn.yaml"


#: The Apptainer image of the compute rules (`container:`) and its JSON record (digest, base).
IMAGE = config["container"]["image"]
IMAGE_RECORD = image_record_path(IMAGE)


#: NVIDIA's image, which the jobs of engine nvidia start themselves (rules/nvidia.smk).
NVIDIA_IMAGE = config["container"]["nvidia"]["image"]
NVIDIA_IMAGE_RECORD = image_record_path(NVIDIA_IMAGE)


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


# NVIDIA's code exists only in its image: a run of engine nvidia cannot run without one.
_nvidia_runs = runs_of_engine(config, "nvidia")
if _nvidia_runs and not IN_CONTAINER:
    raise WorkflowError(
        f"runs.{_nvidia_runs[0]}.engine: nvidia runs NVIDIA's own code, which exists only in "
        f"its Apptainer image ({NVIDIA_IMAGE}): run with --use-singularity (e.g. --profile "
        "profiles/local or profiles/slurm), or set the run's engine: torchvision (README.md: "
        "Running NVIDIA's original implementation)."
    )


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


def code(script, without=()):
    """The script of a rule and every project module it can import, derived from its imports
    (workflow/code_inputs.py): editing any of them reruns the rule, and a new module is never
    forgotten. ``without``: modules the job does not import under its settings."""
    return code_inputs(workflow.basedir, f"scripts/{script}.py", without)


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing at all when there are none).

    Rules that share an output pattern (a synthetic dataset's data/<dataset>/train and a
    folder source's link of the same name) are told apart by which names they may take.
    """
    names = sorted(set(names))
    return "|".join(map(re.escape, names)) if names else "(?!)"


def split_args(dataset):
    """--split NAME IMAGES ANNOTATIONS for every split of ``dataset`` (under data/<dataset>/)."""
    return " ".join(
        shlex.join(["--split", split, files["images"], files["annotations"]])
        for split in dataset_splits(config, dataset)
        for files in [split_paths(config, dataset, split)]
    )


def dataset_of(run):
    return run_config(config, run)["dataset"]


def dataset_inputs(wildcards):
    """What every reader of a run's dataset waits for: its record (``dataset``:
    data/<dataset>/dataset.json, categories and checksums, rewritten when the data changes)
    and its validation report (``validation``, which exists only for a dataset without
    errors, so a reader never starts before the checks have passed).

    Once the report is newer than the data it checked, it is ancient: a rerun of the checks
    alone (their code, their wording, bbox_tolerance) reruns none of the readers. Data that
    changed in place since (or a report still to write) makes it a plain input again: with
    an ancient one, Snakemake 9.27.1 would not even look at the jobs after a validate that
    reruns (snakemake/snakemake#4166), and new data could wait for the next invocation.
    """
    dataset = dataset_of(wildcards.run)
    validation = validation_report(dataset)
    checked = newer_than_all(validation, dataset_files(config, dataset))
    return {
        "dataset": dataset_record(dataset),
        "validation": ancient(validation) if checked else validation,
    }


def split_of(run, key):
    """Images folder and annotation file of a run's train_split or eval_split."""
    settings = run_config(config, run)
    return split_paths(config, settings["dataset"], settings[key])


def run_split(key, path):
    """Params function: the images folder or annotation file of a run's train/eval split."""
    return lambda wildcards: split_of(wildcards.run, key)[path]


def eval_split(path):
    """Params function: the images folder or annotation file of {split} of a run's dataset."""
    return lambda wildcards: split_paths(
        config, dataset_of(wildcards.run), wildcards.split
    )[path]


def as_json(settings):
    """Params are compared as values between runs: a sorted JSON string is stable."""
    return json.dumps(settings, sort_keys=True)


def settings_of(stage):
    """Params function: the run's settings of ``stage`` that can change its outputs
    (workflow/params.py), as JSON: a changed one reruns the rule."""
    return lambda wildcards: as_json(stage_params(config, wildcards.run, stage))


def operational_of(stage):
    """Params function: the run's settings of ``stage`` that cannot change its outputs
    (threads, checkpoint and log periods, DataLoader workers: workflow/params.py), as JSON.

    It takes ``threads`` so that Snakemake treats it as derived from the job's resources
    (rules.py: _is_deriving_function) and leaves it out of the params it records and compares
    (persistence: non_derived_params): the value reaches the job, a change reruns nothing.
    """
    return lambda wildcards, threads: as_json(
        stage_operational(config, wildcards.run, stage)
    )


def predict_code():
    """What predicting depends on, for evaluation and inference alike."""
    return code("predict")


def train_threads(wildcards):
    """The threads of a job that trains or tests a run (workflow/resources.py)."""
    return job_resources.train_threads(run_config(config, wildcards.run))


def prediction_resource(name):
    """One of the resources of a job that predicts with a run's model (workflow/resources.py:
    prediction_resources)."""
    return lambda wildcards: job_resources.prediction_resources(
        run_config(config, wildcards.run)
    )[name]


def image_inputs(wildcards):
    """The image and its record, as inputs of every job that runs in it.

    Snakemake does not infer that a local .sif is made by the build_image job, so the edge
    must be an input. Without --use-singularity there is none, so nothing about containers
    runs.
    """
    return {"image": IMAGE, "image_record": IMAGE_RECORD} if IN_CONTAINER else {}


def train_resource(name):
    """One of the train job's resources, from its run's gpus, nodes and resources keys."""

    def resource(wildcards, threads):
        settings = run_config(config, wildcards.run)
        in_image = ()
        if IN_CONTAINER and settings["nodes"] > 1:
            in_image = exec_prefix(
                IMAGE, binary=apptainer_binary(), args=APPTAINER_ARGS
            )
        return job_resources.train_resources(
            settings, threads=threads, container=in_image
        )[name]

    return resource


def runs_of(engine):
    """A wildcard constraint: the runs of ``engine``; the rules of the other engine that make
    the same files (train/metrics.jsonl, eval/<split>/predictions.json) never match them.
    """
    return one_of(runs_of_engine(config, engine))
