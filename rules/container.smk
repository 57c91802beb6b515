# The Apptainer images of the compute rules (containers/README.md): the pipeline's own
# (config `container:`, results/container/maskrcnn.sif) and, when a run has engine: nvidia,
# NVIDIA's (`container.nvidia:`, results/container/nvidia-maskrcnn.sif). One rule builds
# either from containers/<name>.def. Only jobs that run in an image list it as an input, and
# only with --use-singularity (or --sdm apptainer); without it, nothing here runs.
# These rules run on the submitting host (localrule), where Apptainer builds are allowed, in
# Snakemake's own Python (`run:`): building an image cannot need an image or a conda env.


include: "helpers/container.smk"


# Built once; again only when the definition or the build arguments (base image, NVIDIA's
# source commit) change (input and params), not when the pipeline's code or settings do.
rule build_image:
    input:
        definition=image_setting("definition"),
        code=ancient(module_inputs(workflow.basedir, IMAGES_MODULE)),
    output:
        image=paths.image(),
        record=paths.image_record(),
    log:
        "results/logs/build_image/{image}.log",
    benchmark:
        "results/benchmarks/build_image/{image}.tsv"
    wildcard_constraints:
        image=images_built(True),
    localrule: True
    params:
        base=image_setting("base"),
        build_args=lambda wildcards: as_json(IMAGES[wildcards.image]["build_args"]),
    run:
        build_image(
            input.definition,
            output.image,
            output.record,
            base=params.base,
            build_args=json.loads(params.build_args),
            log=log[0],
        )


# A site-provided image (build: false), used as it is: only its digest is recorded.
rule describe_image:
    input:
        image=image_setting("image"),
        code=ancient(module_inputs(workflow.basedir, IMAGES_MODULE)),
    output:
        record=paths.image_record(),
    log:
        "results/logs/describe_image/{image}.log",
    benchmark:
        "results/benchmarks/describe_image/{image}.tsv"
    wildcard_constraints:
        image=images_built(False),
    localrule: True
    run:
        describe_image(input.image, output.record, log=log[0])
