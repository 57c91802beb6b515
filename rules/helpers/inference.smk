# Input, params and resource functions of rules/inference.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).


def inference_targets():
    """The overlays and sample of every entry under `inference:` (each implies its results)."""
    return [
        f"{paths.inference_dir(entry['run'], name)}/{target}"
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
            f"{wildcards.run!r}: ask for "
            f"{paths.inference_dir(entry['run'], wildcards.inference)}/"
        )
    return entry


def infer_inputs(wildcards):
    """The run's final model, the entry's images and the prediction code."""
    return {
        "model": paths.model(wildcards.run),
        "images": inference_entry(wildcards)["images"],
        "code": predict_code(),
    }
