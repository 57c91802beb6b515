"""Where the workflow's files live: the one place that spells the layout of results/.

Each function gives a path of one run (or split, image, ...) when called with names, and the
rule's wildcard pattern when called without (the defaults are the wildcards), so a rule's
``output:`` and every input function that asks for that file use the same function:

    output: model=paths.model()                     # results/{run}/train/model_final.pth
    input: lambda wildcards: paths.model(wildcards.run)

Run and inference names are wildcards constrained to safe characters (Snakefile), so a path
built here never leaves results/. NVIDIA's own folders (train/nvidia/, eval/<split>/nvidia/)
are spelled by maskrcnn_pipeline.nvidia.command, whose command lines contain them.
"""

from __future__ import annotations

RESULTS = "results"
#: Apptainer images built by the workflow, and the JSON record of every image.
IMAGE_DIR = f"{RESULTS}/container"


def image(name: str = "{image}") -> str:
    """A built image: results/container/<name>.sif."""
    return f"{IMAGE_DIR}/{name}.sif"


def image_record(name: str = "{image}") -> str:
    """An image's record (digest, base, build time): results/container/<name>.json."""
    return f"{IMAGE_DIR}/{name}.json"


def train_dir(run: str = "{run}") -> str:
    """results/<run>/train/: the final model, its log and provenance; checkpoints/ inside."""
    return f"{RESULTS}/{run}/train"


def model(run: str = "{run}") -> str:
    return f"{train_dir(run)}/model_final.pth"


def metrics_log(run: str = "{run}") -> str:
    """The training's metrics.jsonl (maskrcnn_pipeline.metrics_log)."""
    return f"{train_dir(run)}/metrics.jsonl"


def provenance(run: str = "{run}") -> str:
    return f"{train_dir(run)}/provenance.json"


def eval_dir(run: str = "{run}", split: str = "{split}") -> str:
    """results/<run>/eval/<split>/: predictions, COCO metrics, per category, PR curves."""
    return f"{RESULTS}/{run}/eval/{split}"


def eval_file(name: str, run: str = "{run}", split: str = "{split}") -> str:
    """One file of a run's evaluation on ``split`` (predictions.json, metrics.json ...)."""
    return f"{eval_dir(run, split)}/{name}"


def report_dir(run: str = "{run}") -> str:
    """results/<run>/report/: summary.md, tables and figures of one run."""
    return f"{RESULTS}/{run}/report"


#: The comparison of all runs: comparison.md, .csv, .html and figures.
COMPARISON_DIR = f"{RESULTS}/report"


def inference_dir(run: str = "{run}", inference: str = "{inference}") -> str:
    """results/<run>/inference/<name>/: predictions on a folder of images, overlays."""
    return f"{RESULTS}/{run}/inference/{inference}"
