# Training of engine torchvision (engine nvidia: rules/nvidia.smk): one rule per run, launched
# with torchrun when the run has several processes (scripts/train.py starts it). Resume state
# lives in results/<run>/train/checkpoints/, which is not a declared output, so a failed,
# preempted or killed job never loses it: `retries` (and any rerun) resumes from the last
# checkpoint. Snakemake deletes the log before each attempt; with several processes, each
# one's output of every attempt stays in results/<run>/train/rank_logs/ (train/launch.py).
# Training waits for the dataset's record and its validation report (errors stop the run
# before training). Settings that cannot change the model reach it as --operational. A data
# error (an unreadable image) is not retried: the failed attempt records it and the retry
# (--attempt 2, 3) stops at once (maskrcnn_pipeline/train/data_error.py).


include: "helpers/train.smk"


rule train:
    input:
        unpack(train_inputs),
        unpack(image_inputs),
    output:
        model=paths.model(),
        metrics=paths.metrics_log(),
        provenance=paths.provenance(),
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    wildcard_constraints:
        run=runs_of("torchvision"),
    retries: 2
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
        attempt=attempt_number,
    params:
        settings=settings_of("train"),
        operational=operational_of("train"),
        images=run_split("train_split", "images"),
        annotations=run_split("train_split", "annotations"),
        out_dir=subpath(output.model, parent=True),
        eval_split=train_eval_args,
    # exec: the trainer is the job's own process, so it sees what stops the job (a signal
    # to Snakemake is forwarded to it by the Snakefile's onstart; a killed Snakemake
    # orphans it, and --stop-when-orphaned then checkpoints and stops it).
    shell:
        "exec {resources.mpi} python scripts/train.py --run {wildcards.run}"
        " --settings {params.settings:q}"
        " --operational {params.operational:q}"
        " --images {params.images:q} --annotations {params.annotations:q}"
        " {params.eval_split} --out-dir {params.out_dir:q} --stop-when-orphaned"
        " --attempt {resources.attempt}"
        " >> {log} 2>&1"
