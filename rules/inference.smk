# Inference on folders of images without annotations (config `inference:`), the equivalent of
# NVIDIA's inference.sh: COCO results from a run's final model, then overlays drawn from them
# (a separate rule: redrawing needs no GPU and never reruns the model).


include: "helpers/inference.smk"


rule infer:
    input:
        unpack(image_inputs),
        unpack(infer_inputs),
    output:
        predictions=f"{paths.inference_dir()}/predictions.json",
        index=f"{paths.inference_dir()}/images.json",
    log:
        "results/logs/infer/{run}.{inference}.log",
    benchmark:
        "results/benchmarks/infer/{run}.{inference}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    threads: train_threads
    resources:
        gpu=prediction_resource("gpu"),
        mem_mb=prediction_resource("mem_mb"),
        runtime=prediction_resource("runtime"),
    params:
        settings=settings_of("predict"),
        operational=operational_of("predict"),
    shell:
        "python scripts/predict.py --settings {params.settings:q}"
        " --operational {params.operational:q} --model {input.model:q}"
        " --images {input.images:q} --out {output.predictions:q}"
        " --image-index {output.index:q} --workers {threads} > {log} 2>&1"


rule overlay_inference:
    input:
        unpack(image_inputs),
        predictions=rules.infer.output.predictions,
        index=rules.infer.output.index,
        images=lambda wildcards: inference_entry(wildcards)["images"],
        code=code("overlay"),
    output:
        overlays=directory(f"{paths.inference_dir()}/overlays"),
        sample=report(
            f"{paths.inference_dir()}/sample.png",
            caption="../report/inference_sample.rst",
            category="{run}",
            subcategory="4. Inference: {inference}",
            labels={"content": "sample of the overlays"},
        ),
    log:
        "results/logs/overlay_inference/{run}.{inference}.log",
    benchmark:
        "results/benchmarks/overlay_inference/{run}.{inference}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    params:
        num_examples=config["report"]["num_examples"],
        score_threshold=config["report"]["score_threshold"],
    shell:
        "python scripts/overlay.py --predictions {input.predictions:q} --index {input.index:q}"
        " --images {input.images:q} --out-dir {output.overlays:q} --sample {output.sample:q}"
        " --num-examples {params.num_examples} --score-threshold {params.score_threshold}"
        " > {log} 2>&1"
