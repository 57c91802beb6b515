# Input, params and resource functions of rules/train.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).


def train_inputs(wildcards):
    """The dataset's record, the backbone weights when set, and the code."""
    settings = run_config(config, wildcards.run)
    inputs = {**dataset_inputs(wildcards), "code": train_code(settings)}
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
    covered by the dataset's record, already an input)."""
    if not run_config(config, wildcards.run)["eval_period"]:
        return ""
    evaluation = split_of(wildcards.run, "eval_split")
    return f"--eval-images {evaluation['images']} --eval-annotations {evaluation['annotations']}"


def train_container(wildcards):
    """The image, for a single-node training; none for a multi-node one.

    A multi-node job starts the image itself on every node (`srun ... apptainer exec`,
    the `mpi` resource) because srun is not inside the image.
    """
    return CONTAINER if run_config(config, wildcards.run)["nodes"] == 1 else None
