# Input, params and resource functions of rules/report.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).


from maskrcnn_pipeline.workflow.config import comparison_run_info


def run_reports():
    """Every run's summary.md (which brings its figures and tables)."""
    return [f"{paths.report_dir(run)}/summary.md" for run in config["runs"]]


#: The category of the comparison in the HTML report; runs have one each, by name.
COMPARISON_CATEGORY = "All runs"


def run_report_item(name, caption, subcategory, title):
    """A per-run report output marked for `snakemake --report`: filed under its run's
    category, with a caption from report/ (paths are relative to rules/)."""
    return report(
        f"{paths.report_dir()}/{name}",
        caption=f"../report/{caption}.rst",
        category="{run}",
        subcategory=subcategory,
        labels={"content": title},
    )


def comparison_item(name, caption, title):
    """A cross-run comparison output marked for `snakemake --report`."""
    return report(
        f"{paths.COMPARISON_DIR}/{name}",
        caption=f"../report/{caption}.rst",
        category=COMPARISON_CATEGORY,
        labels={"content": title},
    )


def run_eval_file(run, name):
    """One file of a run's evaluation on its eval split."""
    return paths.eval_file(name, run, run_config(config, run)["eval_split"])


def comparison_inputs(wildcards):
    """Every run's final metrics and training log, in config order, plus the code."""
    return {
        "metrics": [run_eval_file(run, "metrics.json") for run in config["runs"]],
        "logs": [paths.metrics_log(run) for run in config["runs"]],
        "code": code("compare"),
    }


def comparison_run_args(wildcards, input):
    """`--run NAME METRICS LOG` per run, from the rule's own inputs (same order as config)."""
    return " ".join(
        f"--run {shlex.quote(run)} {shlex.quote(metrics)} {shlex.quote(log)}"
        for run, metrics, log in zip(config["runs"], input.metrics, input.logs)
    )


def report_inputs(wildcards):
    """A run's training log and provenance, its evaluation, its dataset and the code."""
    run = wildcards.run
    files = ("metrics.json", "predictions.json", "per_category.csv", "pr_curves.csv")
    return {
        "metrics_log": paths.metrics_log(run),
        "provenance": paths.provenance(run),
        **{name.split(".")[0]: run_eval_file(run, name) for name in files},
        **dataset_inputs(wildcards),
        "code": code("report"),
    }
