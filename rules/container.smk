# The Apptainer image of the compute rules (containers/README.md). Only jobs that run in it
# list it as an input, and only with --use-singularity (or --sdm apptainer); without it,
# nothing here runs.
# These rules run on the submitting host (localrule), where Apptainer builds are allowed, in
# Snakemake's own Python (`run:`): building the image cannot need the image or a conda env.


if config["container"]["build"]:

    # Built once; again only when the definition or the base image changes (input and
    # params), not when the pipeline's code or settings do.
    rule build_image:
        input:
            definition=config["container"]["definition"],
        output:
            image=IMAGE,
            record=IMAGE_RECORD,
        log:
            "results/logs/build_image/image.log",
        benchmark:
            "results/benchmarks/build_image/image.tsv"
        localrule: True
        params:
            base=config["container"]["base"],
        run:
            build_image(
                input.definition,
                output.image,
                output.record,
                base=params.base,
                log=log[0],
            )

else:

    # A site-provided image, used as it is: only its digest is recorded.
    rule describe_image:
        input:
            image=IMAGE,
        output:
            record=IMAGE_RECORD,
        log:
            "results/logs/describe_image/image.log",
        benchmark:
            "results/benchmarks/describe_image/image.tsv"
        localrule: True
        run:
            describe_image(input.image, output.record, log=log[0])
