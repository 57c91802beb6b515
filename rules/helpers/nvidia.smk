# Input, params and resource functions of rules/nvidia.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).


import os

from maskrcnn_pipeline.nvidia import command as nvidia
from maskrcnn_pipeline.workflow.config import dataset_dir


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
        **dataset_inputs(wildcards),
        "catalog": nvidia.catalog_file(wildcards.run),
        "weights": run_config(config, wildcards.run)["nvidia"]["weights"],
    }


def nvidia_test_inputs(wildcards):
    """What test_net.py reads: the trained weights, the catalog and the dataset."""
    return {
        "model": nvidia.model_final(wildcards.run),
        "catalog": nvidia.catalog_file(wildcards.run),
        **dataset_inputs(wildcards),
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
