# Helpers shared by all rules: config validation, paths, params and code inputs.
# No torch here: this file is read on every snakemake call.
import json
import os
import posixpath
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from maskrcnn_pipeline.workflow.resources import train_resources
from maskrcnn_pipeline.workflow.config import (
    checksum_options,
    dataset_dir,
    dataset_splits,
    download_files,
    images,
    remote_url,
    run_config,
    runs_of_engine,
    split_paths,
    split_sources,
    validate_config,
    dataset_record,
)
from maskrcnn_pipeline.workflow.images import (
    apptainer_binary,
    build_image,
    describe_image,
    exec_prefix,
    image_record_path,
    unset_variables,
)
from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.workflow.code_inputs import code_inputs, module_inputs
from maskrcnn_pipeline.workflow.params import stage_operational, stage_params
from maskrcnn_pipeline.nvidia import command as nvidia
from maskrcnn_pipeline.provenance import IMAGE_INFO_ENV

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
#: Every image the config needs, by record name: what build_image or describe_image makes.
IMAGES = images(config)
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


def datasets_of(source):
    return one_of(
        name for name, entry in config["datasets"].items() if entry["source"] == source
    )


def splits_of(source):
    return one_of(
        split
        for name, entry in config["datasets"].items()
        if entry["source"] == source
        for split in dataset_splits(config, name)
    )


def fetch_url(entries):
    """Params function: where {file} of ``entries`` comes from (<mirror>/<file> when set)."""
    return lambda wildcards: remote_url(config, wildcards.file, entries[wildcards.file])


def checksum_flags(entries):
    """Params function: fetch.py's checksum options for {file} of ``entries`` (or the lock
    file of a file trusted on first use)."""
    return lambda wildcards: " ".join(
        f"--{key.replace('_', '-')} {shlex.quote(value)}"
        for key, value in checksum_options(config, entries[wildcards.file]).items()
    )


def unpack_dest(wildcards):
    """The folder an archive unpacks into: data/<dataset>/<its unpack setting>."""
    entry = download_files(config, wildcards.dataset)[wildcards.file]
    return posixpath.normpath(f"data/{wildcards.dataset}/{entry['unpack']}")


def link_target(key):
    """Params function: what a folder source's link for {split} points at (images or file)."""
    return lambda wildcards: split_sources(config, wildcards.dataset, wildcards.split)[
        key
    ]


def dataset_files(wildcards):
    """What the validate rule checks, as the dataset's source rule leaves it."""
    dataset = wildcards.dataset
    if config["datasets"][dataset]["source"] == "download":
        return [
            f"data/{dataset}/.unpacked/{file}.json"
            for file in download_files(config, dataset)
        ]
    return [
        path
        for split in dataset_splits(config, dataset)
        for path in split_paths(config, dataset, split).values()
    ]


def split_args(dataset):
    """--split NAME IMAGES ANNOTATIONS for every split of ``dataset`` (under data/<dataset>/)."""
    return " ".join(
        shlex.join(["--split", split, paths["images"], paths["annotations"]])
        for split in dataset_splits(config, dataset)
        for paths in [split_paths(config, dataset, split)]
    )


def validate_split_args(wildcards):
    """validate_dataset.py's splits."""
    return split_args(wildcards.dataset)


def validation_flags(wildcards):
    settings = config["datasets"][wildcards.dataset]["validation"]
    flags = f"--bbox-tolerance {settings['bbox_tolerance']}"
    return flags + (" --decode-images" if settings["decode_images"] else "")


def dataset_of(run):
    return run_config(config, run)["dataset"]


def dataset_report(wildcards):
    """The record of a run's dataset (verdict and categories of its validation report):
    every consumer of the data waits for it."""
    return dataset_record(dataset_of(wildcards.run))


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


def run_reports():
    return [f"results/{run}/report/summary.md" for run in config["runs"]]


#: The category of the comparison in the HTML report; runs have one each, by name.
COMPARISON_CATEGORY = "All runs"


def run_report_item(name, caption, subcategory, title):
    """A per-run report output marked for `snakemake --report`: filed under its run's
    category, with a caption from report/ (paths are relative to rules/)."""
    return report(
        f"results/{{run}}/report/{name}",
        caption=f"../report/{caption}.rst",
        category="{run}",
        subcategory=subcategory,
        labels={"content": title},
    )


def comparison_item(name, caption, title):
    """A cross-run comparison output marked for `snakemake --report`."""
    return report(
        f"results/report/{name}",
        caption=f"../report/{caption}.rst",
        category=COMPARISON_CATEGORY,
        labels={"content": title},
    )


def comparison_inputs(wildcards):
    """Every run's final metrics and training log, in config order, plus the code."""
    return {
        "metrics": [f"{eval_dir(run)}/metrics.json" for run in config["runs"]],
        "logs": [f"results/{run}/train/metrics.jsonl" for run in config["runs"]],
        "code": code("compare"),
    }


def eval_dir(run):
    split = run_config(config, run)["eval_split"]
    return f"results/{run}/eval/{split}"


def comparison_run_args(wildcards, input):
    """`--run NAME METRICS LOG` per run, from the rule's own inputs (same order as config)."""
    return " ".join(
        f"--run {shlex.quote(run)} {shlex.quote(metrics)} {shlex.quote(log)}"
        for run, metrics, log in zip(config["runs"], input.metrics, input.logs)
    )


def comparison_run_info():
    """What the comparison shows about each run from the config; 'dataset' selects the
    reference lines (report.references) that apply."""
    info = {}
    for run in config["runs"]:
        settings = run_config(config, run)
        info[run] = {
            "dataset": settings["dataset"],
            "eval_split": settings["eval_split"],
            "engine": settings["engine"],
            "gpus": settings["gpus"] * settings["nodes"],
            "precision": settings["precision"],
        }
    return as_json(info)


def inference_targets():
    """The overlays and sample of every entry under `inference:` (each implies its results)."""
    return [
        f"results/{entry['run']}/inference/{name}/{target}"
        for name, entry in config["inference"].items()
        for target in ("overlays", "sample.png")
    ]


def inference_entry(wildcards):
    """The `inference:` entry of a target path; its run must be the one in the path."""
    try:
        entry = config["inference"][wildcards.inference]
    except KeyError:
        raise WorkflowError(
            f"inference.{wildcards.inference}: no such entry under inference: in the config"
        ) from None
    if entry["run"] != wildcards.run:
        raise WorkflowError(
            f"inference.{wildcards.inference} uses run {entry['run']!r}, not "
            f"{wildcards.run!r}: ask for results/{entry['run']}/inference/"
            f"{wildcards.inference}/"
        )
    return entry


def infer_inputs(wildcards):
    return {
        "model": f"results/{wildcards.run}/train/model_final.pth",
        "images": inference_entry(wildcards)["images"],
        "code": predict_code(),
    }


def predict_code():
    """What predicting depends on, for evaluation and inference alike."""
    return code("predict")


def synthetic_args(wildcards):
    """The generator's options as CLI flags; as params, a changed option regenerates the data."""
    settings = config["datasets"][wildcards.dataset]["synthetic"]
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in sorted(settings.items())
    )


def train_inputs(wildcards):
    """The dataset's validation report, the backbone weights when set, and the code."""
    settings = run_config(config, wildcards.run)
    inputs = {
        "dataset": dataset_record(settings["dataset"]),
        "code": train_code(settings),
    }
    if settings["model"]["backbone_weights"]:
        inputs["weights"] = settings["model"]["backbone_weights"]
    return inputs


#: Training imports its evaluation hook (and through it inference and evaluation) only when
#: the run evaluates periodically (train/run.py: periodic_evaluation).
EVALUATION_HOOK = "maskrcnn_pipeline.train.evaluation_hook"


def train_code(settings):
    """The training code of a run: without the evaluation hook's modules when eval_period
    is 0, so editing predict or evaluation never retrains a run that does not evaluate.
    """
    return code("train", without=() if settings["eval_period"] else (EVALUATION_HOOK,))


def train_eval_args(wildcards):
    """The eval split for periodic evaluation during training, when the run has one (it is
    covered by the dataset's validation report, already an input)."""
    if not run_config(config, wildcards.run)["eval_period"]:
        return ""
    evaluation = split_of(wildcards.run, "eval_split")
    return f"--eval-images {evaluation['images']} --eval-annotations {evaluation['annotations']}"


def train_threads(wildcards):
    settings = run_config(config, wildcards.run)
    return max(
        1,
        settings["threads"],
        settings["dataloader"]["workers"] * max(1, settings["gpus"]),
    )


def predict_inputs(wildcards):
    return {
        "model": f"results/{wildcards.run}/train/model_final.pth",
        "dataset": dataset_report(wildcards),
        "code": predict_code(),
    }


def report_inputs(wildcards):
    split = run_config(config, wildcards.run)["eval_split"]
    eval_dir = f"results/{wildcards.run}/eval/{split}"
    return {
        "metrics_log": f"results/{wildcards.run}/train/metrics.jsonl",
        "provenance": f"results/{wildcards.run}/train/provenance.json",
        "metrics": f"{eval_dir}/metrics.json",
        "predictions": f"{eval_dir}/predictions.json",
        "per_category": f"{eval_dir}/per_category.csv",
        "pr_curves": f"{eval_dir}/pr_curves.csv",
        "dataset": dataset_report(wildcards),
        "code": code("report"),
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


# --- images (rules/container.smk) ---------------------------------------------------------


def image_setting(key):
    """Input/params function: one setting (image, definition, base) of the image {image}."""
    return lambda wildcards: IMAGES[wildcards.image][key]


def images_built(build):
    """A wildcard constraint: the images the workflow builds (True) or only records (False)."""
    return one_of(name for name, entry in IMAGES.items() if entry["build"] == build)


# --- engines (rules/train.smk, rules/evaluate.smk, rules/nvidia.smk) ------------------------


def runs_of(engine):
    """A wildcard constraint: the runs of ``engine``; the rules of the other engine that make
    the same files (train/metrics.jsonl, eval/<split>/predictions.json) never match them.
    """
    return one_of(runs_of_engine(config, engine))


def run_setting(*keys):
    """Params function: one setting of the run, e.g. run_setting("nvidia", "num_classes")."""

    def setting(wildcards):
        value = run_config(config, wildcards.run)
        for key in keys:
            value = value[key]
        return value

    return setting


def nvidia_image_inputs(wildcards):
    """NVIDIA's image and its record, as inputs of the jobs that start it."""
    return {"nvidia_image": NVIDIA_IMAGE, "nvidia_image_record": NVIDIA_IMAGE_RECORD}


def nvidia_exec(wildcards, input):
    """Params: `apptainer exec --home <workdir> --nv <--apptainer-args> --bind
    <data/dataset>:/datasets/data:ro <NVIDIA image> env -u PYTHONPATH`, which starts every
    command of NVIDIA's code: the run's dataset where their catalog expects COCO, their Python
    without this checkout's package. Derived from the input (the image), so how the image is
    started (the checkout's path, --apptainer-args) never reruns a job; its settings do.
    """
    data = os.path.abspath(dataset_dir(dataset_of(wildcards.run)))
    prefix = exec_prefix(
        input.nvidia_image,
        binary=apptainer_binary(),
        args=APPTAINER_ARGS,
        binds=[f"{data}:{nvidia.DATA_MOUNT}:ro"],
    )
    return shlex.join([*prefix, "env", "-u", "PYTHONPATH"])


def nvidia_train_command(wildcards):
    """Params: train_net.py's full command line (every setting of the run is in it)."""
    return shlex.join(
        nvidia.train_command(wildcards.run, run_config(config, wildcards.run))
    )


def nvidia_test_command(wildcards):
    """Params: test_net.py's full command line for {split}."""
    settings = run_config(config, wildcards.run)
    return shlex.join(nvidia.test_command(wildcards.run, settings, wildcards.split))


def nvidia_split_args(wildcards):
    """nvidia_prepare.py's splits: every split of the run's dataset goes into its catalog."""
    return split_args(dataset_of(wildcards.run))


def nvidia_train_inputs(wildcards):
    """What train_net.py reads: the dataset (through its validation report), the generated
    catalog (written after the checkpoints of other settings were set aside) and the backbone
    weights, placed beforehand so nothing is downloaded at run time."""
    return {
        "dataset": dataset_report(wildcards),
        "catalog": nvidia.catalog_file(wildcards.run),
        "weights": run_config(config, wildcards.run)["nvidia"]["weights"],
    }


def nvidia_test_inputs(wildcards):
    """What test_net.py reads: the trained weights, the catalog and the dataset."""
    return {
        "model": nvidia.model_final(wildcards.run),
        "catalog": nvidia.catalog_file(wildcards.run),
        "dataset": dataset_report(wildcards),
    }


def nvidia_provenance_settings(wildcards):
    """Params: what the training's provenance records: the engine, the exact command, the
    image's source, and the run's settings."""
    settings = run_config(config, wildcards.run)
    return as_json(
        {
            "engine": "nvidia",
            "command": nvidia.train_command(wildcards.run, settings),
            "source": {
                key: config["container"]["nvidia"][key]
                for key in ("base", "source_repository", "source_commit")
            },
            "run": stage_params(config, wildcards.run, "train"),
        }
    )


def nvidia_eval_resource(name):
    """test_net.py's resources: the run's GPUs (TEST.IMS_PER_BATCH is split over them) and
    host memory for them; two hours."""

    def resource(wildcards):
        settings = run_config(config, wildcards.run)
        gpus = settings["gpus"]
        return {
            "gpu": gpus,
            "mem_mb": settings["resources"]["mem_mb_per_gpu"] * gpus,
            "runtime": 120,
        }[name]

    return resource


def nvidia_inference_benchmark_command(wildcards):
    """Params: inference_benchmark.sh's command for batch size {batch}."""
    settings = run_config(config, wildcards.run)
    command = nvidia.inference_benchmark_command(
        wildcards.run, settings, int(wildcards.batch)
    )
    return shlex.join(command)


def nvidia_benchmark_inputs(wildcards):
    """The raw dllogger folders a benchmark summary reads: the training benchmark's, or one
    inference benchmark per batch size of runs.<run>.nvidia.benchmark."""
    folder = nvidia.benchmark_dir(wildcards.run, wildcards.kind)
    if wildcards.kind == "train":
        return [folder]
    sizes = run_config(config, wildcards.run)["nvidia"]["benchmark"][
        "inference_batch_sizes"
    ]
    return [f"{folder}/bs{size}" for size in sizes]
