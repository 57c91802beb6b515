# Evaluation: predict on a run's eval split, then the COCO metrics of those predictions.
# A run of engine nvidia gets its predictions.json from NVIDIA's test_net.py instead
# (rules/nvidia.smk); evaluate is the same for both engines.


include: "helpers/evaluate.smk"


rule predict:
    input:
        unpack(predict_inputs),
        unpack(image_inputs),
    output:
        paths.eval_file("predictions.json"),
    log:
        "results/logs/predict/{run}.{split}.log",
    benchmark:
        "results/benchmarks/predict/{run}.{split}.tsv"
    wildcard_constraints:
        run=runs_of("torchvision"),
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
        images=eval_split("images"),
        annotations=eval_split("annotations"),
    shell:
        "python scripts/predict.py --settings {params.settings:q}"
        " --operational {params.operational:q} --model {input.model:q}"
        " --images {params.images:q} --annotations {params.annotations:q} --out {output:q}"
        " --workers {threads} > {log} 2>&1"


rule evaluate:
    input:
        unpack(image_inputs),
        unpack(dataset_inputs),
        predictions=paths.eval_file("predictions.json"),
        code=code("evaluate"),
    output:
        metrics=paths.eval_file("metrics.json"),
        per_category=paths.eval_file("per_category.csv"),
        pr_curves=paths.eval_file("pr_curves.csv"),
    log:
        "results/logs/evaluate/{run}.{split}.log",
    benchmark:
        "results/benchmarks/evaluate/{run}.{split}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    params:
        backend=config["evaluation"]["backend"],
        annotations=eval_split("annotations"),
    shell:
        "python scripts/evaluate.py --annotations {params.annotations:q}"
        " --results {input.predictions:q} --backend {params.backend} --out {output.metrics:q}"
        " --per-category-csv {output.per_category:q} --pr-curves-csv {output.pr_curves:q}"
        " > {log} 2>&1"
