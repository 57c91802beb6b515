# Helpers shared by all rules: config validation, paths, params and code inputs.
# No torch here: this file is read on every snakemake call.
import json
import shlex
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
        "code": code("compare", "report"),
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
    return code("predict", "predict", "model", "data/coco")


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
        "code": predict_code(),
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
