# Input, params and resource functions of rules/train.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).
from maskrcnn_pipeline.workflow.code_inputs import train_code


def train_inputs(wildcards):
    """The dataset's record, the backbone weights when set, and the code."""
    settings = run_config(config, wildcards.run)
    inputs = {
        **dataset_inputs(wildcards),
        "code": train_code(workflow.basedir, settings),
    }
    if settings["model"]["backbone_weights"]:
        inputs["weights"] = settings["model"]["backbone_weights"]
    return inputs


def train_eval_args(wildcards):
    """The eval split for periodic evaluation during training, when the run has one (it is
    covered by the dataset's record, already an input)."""
    if not run_config(config, wildcards.run)["eval_period"]:
        return ""
    evaluation = split_of(wildcards.run, "eval_split")
    return shlex.join(
        [
            "--eval-images",
            evaluation["images"],
            "--eval-annotations",
            evaluation["annotations"],
        ]
    )


def train_container(wildcards):
    """The image, for a single-node training; none for a multi-node one.

    A multi-node job starts the image itself on every node (`srun ... apptainer exec`,
    the `mpi` resource) because srun is not inside the image.
    """
    return CONTAINER if run_config(config, wildcards.run)["nodes"] == 1 else None


def attempt_number(wildcards, attempt):
    """Resource function: the job's attempt (1, then 2.. on `retries`), which Snakemake
    gives to resources only; scripts/train.py refuses to retry into a recorded data error.
    """
    return attempt
