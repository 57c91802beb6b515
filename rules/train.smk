# Training: one rule per run. Resume state lives in results/<run>/train/checkpoints/, which is
# not a declared output, so a failed or killed job never loses it.


rule train:
    input:
        unpack(train_inputs),
        unpack(image_inputs),
    output:
        model="results/{run}/train/model_final.pth",
        metrics="results/{run}/train/metrics.jsonl",
        provenance="results/{run}/train/provenance.json",
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    conda:
        ENV
    container:
        train_container
    threads: train_threads
    resources:
        runtime=train_resource("runtime"),
        mem_mb=train_resource("mem_mb"),
        nodes=train_resource("nodes"),
        gpu=train_resource("gpu"),
        gres=train_resource("gres"),
        tasks=train_resource("tasks"),
        tasks_per_gpu=train_resource("tasks_per_gpu"),
        mpi=train_resource("mpi"),
    params:
        settings=lambda wildcards: as_json(train_settings(config, wildcards.run)),
        out_dir=subpath(output.model, parent=True),
    shell:
        "python scripts/train.py --settings {params.settings:q} --images {input.images:q}"
        " --annotations {input.annotations:q} --out-dir {params.out_dir:q} > {log} 2>&1"
