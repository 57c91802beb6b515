# Input, params and resource functions of rules/evaluate.smk, and what they import
# (`snakemake --lint` wants functions apart from the rules that use them).


def predict_inputs(wildcards):
    """The run's final model, its dataset's record and the prediction code."""
    return {
        "model": paths.model(wildcards.run),
        **dataset_inputs(wildcards),
        "code": predict_code(),
    }
