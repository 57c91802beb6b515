# A reproducible Mask R-CNN pipeline: data -> train -> predict -> evaluate -> report.
# Every stage is a rule with file targets; see README.md ("How it works").
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


# Run, dataset and split names become paths: keep them to safe characters.
wildcard_constraints:
    run=r"[A-Za-z0-9_.-]+",
    dataset=r"[A-Za-z0-9_.-]+",
    split=r"[A-Za-z0-9_.-]+",
    file=r"[A-Za-z0-9_.-]+",
    inference=r"[A-Za-z0-9_.-]+",
    image=r"[A-Za-z0-9_.-]+",


include: "rules/container.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/nvidia.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/inference.smk"


rule all:
    default_target: True
    input:
        run_reports(),
        rules.compare.output.summary,
        inference_targets(),
