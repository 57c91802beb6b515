# A reproducible Mask R-CNN pipeline: data -> train -> predict -> evaluate -> report.
# Every stage is a rule with file targets; see README.md ("How it works").
from pathlib import Path

from snakemake.utils import min_version

from maskrcnn_pipeline.train.lock import LOCK_NAME
from maskrcnn_pipeline.workflow import paths
from maskrcnn_pipeline.workflow.config import SAFE_NAME
from maskrcnn_pipeline.workflow.stop_signals import forward_stop_signals

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


# Run, dataset, split, file, inference and image names become paths: only safe names, never
# '.', '..' or a hidden name (maskrcnn_pipeline/names.py; the schema refuses them first).
wildcard_constraints:
    run=SAFE_NAME,
    dataset=SAFE_NAME,
    split=SAFE_NAME,
    file=SAFE_NAME,
    inference=SAFE_NAME,
    image=SAFE_NAME,


include: "rules/container.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/nvidia.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/inference.smk"


# Stopping Snakemake (SIGTERM, SIGINT) first asks its trainers to checkpoint and stop: on its
# own, Snakemake waits hours for a running training (SIGTERM) or abandons it (SIGINT).
onstart:
    forward_stop_signals(lambda: Path().glob(f"{paths.train_dir('*')}/{LOCK_NAME}"))


rule all:
    default_target: True
    input:
        run_reports(),
        rules.compare.output.summary,
        inference_targets(),
