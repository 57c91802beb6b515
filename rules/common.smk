# Helpers shared by all rules: config validation, paths, params and code inputs.
# No torch here: this file is read on every snakemake call.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from maskrcnn_pipeline.config import (
    predict_settings,
    run_config,
    split_paths,
    train_settings,
    validate_config,
)
from maskrcnn_pipeline.errors import PipelineError

try:
    validate_config(config)
except PipelineError as error:
    raise WorkflowError(str(error)) from None


PACKAGE = "maskrcnn_pipeline"
#: The conda environment of every rule (`--use-conda`), relative to rules/.
ENV = "../envs/maskrcnn.yaml"

# Jobs import the package from this checkout, whatever environment they run in (venv, conda
# env, container with the checkout bound): put it first on their PYTHONPATH.
shell.prefix(
    # braces doubled: Snakemake formats the prefix like any shell command
    "set -euo pipefail; export PYTHONPATH="
    + workflow.basedir
    + "${{PYTHONPATH:+:$PYTHONPATH}}; "
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
    inputs = {
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
            "launch",
            "periodic_eval",
            "predict",
        ),
    }
    if run_config(config, wildcards.run)["eval_period"]:
        evaluation = split_of(wildcards.run, "eval_split")
        inputs["eval_images"] = evaluation["images"]
        inputs["eval_annotations"] = evaluation["annotations"]
    return inputs


def train_eval_args(wildcards):
    """The eval split for periodic evaluation during training, when the run has one."""
    if not run_config(config, wildcards.run)["eval_period"]:
        return ""
    evaluation = split_of(wildcards.run, "eval_split")
    return f"--eval-images {evaluation['images']} --eval-annotations {evaluation['annotations']}"


def train_launcher(wildcards):
    """srun starts one launcher per node of a multi-node run (Slurm's `mpi` resource)."""
    return "srun" if run_config(config, wildcards.run)["nodes"] > 1 else ""


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
