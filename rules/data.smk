# Datasets: the generated demo dataset (source: synthetic). Datasets with source: folder are
# used in place and need no rule.


rule generate_synthetic_dataset:
    input:
        unpack(image_inputs),
        code=code("generate_synthetic", "data/synthetic"),
    output:
        train_images=directory("data/{dataset}/train"),
        val_images=directory("data/{dataset}/val"),
        train_annotations="data/{dataset}/annotations/train.json",
        val_annotations="data/{dataset}/annotations/val.json",
    log:
        "results/logs/generate_synthetic_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/generate_synthetic_dataset/{dataset}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    params:
        args=synthetic_args,
    shell:
        "python scripts/generate_synthetic.py --out data/{wildcards.dataset} {params.args}"
        " > {log} 2>&1"
