# Engine nvidia: NVIDIA's own Mask R-CNN (DeepLearningExamples) for runs with `engine:
# nvidia`, fed and read by the pipeline (README.md, "Running NVIDIA's original
# implementation"). After the dataset and the weights, as for any run:
#
#   prepare_nvidia      pipeline  the run's paths_catalog.py, class count, stale checkpoints
#   train_nvidia        NVIDIA    torchrun tools/train_net.py  -> train/nvidia/ (checkpoints)
#   nvidia_metrics      pipeline  their dllogger lines -> train/metrics.jsonl, provenance.json
#   test_nvidia         NVIDIA    torchrun tools/test_net.py   -> eval/<split>/nvidia/
#   nvidia_predictions  pipeline  their bbox.json + segm.json -> eval/<split>/predictions.json
#
# then evaluate (our 12 COCO stats, per category, PR curves), report and compare, unchanged.
# The NVIDIA jobs start its image themselves (params.container: `apptainer exec ... --bind
# data/<dataset>:/datasets/data:ro <image>`): their catalog wants the data at /datasets/data,
# and Snakemake's container: cannot bind per job. Their conda: is only the host side of the
# job, a shell; what runs is the image. The pipeline jobs run like every other rule.
# Benchmarks (on demand): results/<run>/benchmark/nvidia_train.json, nvidia_inference.json.
# NVIDIA's own folders are spelled by maskrcnn_pipeline.nvidia.command, whose command lines
# name them; the files every engine makes (metrics.jsonl, predictions.json) by workflow.paths.


include: "helpers/nvidia.smk"


rule prepare_nvidia:
    input:
        unpack(image_inputs),
        unpack(dataset_inputs),
        code=code("nvidia_prepare"),
    output:
        catalog=nvidia.catalog_file("{run}"),
    log:
        "results/logs/prepare_nvidia/{run}.log",
    benchmark:
        "results/benchmarks/prepare_nvidia/{run}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
    conda:
        ENV
    container:
        CONTAINER
    params:
        command=lambda wildcards: as_json(
            nvidia.train_command(wildcards.run, run_config(config, wildcards.run))
        ),
        data_dir=lambda wildcards: dataset_dir(dataset_of(wildcards.run)),
        splits=nvidia_split_args,
        train_split=run_setting("train_split"),
        num_classes=run_setting("nvidia", "num_classes"),
        train_dir=lambda wildcards: nvidia.train_dir(wildcards.run),
    shell:
        "python scripts/nvidia_prepare.py --run {wildcards.run} --data-dir {params.data_dir:q}"
        " {params.splits} --validation {input.dataset:q} --num-classes {params.num_classes}"
        " --train-split {params.train_split} --command {params.command:q}"
        " --train-dir {params.train_dir:q} --catalog {output.catalog:q} > {log} 2>&1"


# Resumes from NVIDIA's own last_checkpoint in train/nvidia/, which is not a declared folder
# (a failed or preempted attempt keeps it; retries and reruns resume). Before each attempt,
# scripts/nvidia_attempt.py keeps the previous dllogger file (renamed with its start time) for
# nvidia_metrics and drops a last_checkpoint naming a removed file (a forced rerun), so
# training starts over instead of failing. Editing that step does not retrain (ancient).
rule train_nvidia:
    input:
        unpack(nvidia_image_inputs),
        unpack(nvidia_train_inputs),
        code=ancient(code("nvidia_attempt")),
    output:
        model=nvidia.model_final("{run}"),
    log:
        "results/logs/train_nvidia/{run}.log",
    benchmark:
        "results/benchmarks/train_nvidia/{run}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
    retries: 2
    conda:
        ENV
    threads: train_threads
    resources:
        runtime=train_resource("runtime"),
        mem_mb=train_resource("mem_mb"),
        gpu=train_resource("gpu"),
    params:
        container=nvidia_exec,
        command=nvidia_train_command,
        out_dir=subpath(output.model, parent=True),
        summary=lambda wildcards: nvidia.train_summary(wildcards.run),
    shell:
        "python scripts/nvidia_attempt.py --train-dir {params.out_dir:q}"
        " --summary {params.summary:q} >> {log} 2>&1"
        " && {params.container} {params.command} >> {log} 2>&1"


rule nvidia_metrics:
    input:
        unpack(image_inputs),
        unpack(dataset_inputs),
        model=rules.train_nvidia.output.model,
        nvidia_image_record=NVIDIA_IMAGE_RECORD,
        code=code("nvidia_metrics"),
    output:
        metrics=paths.metrics_log(),
        provenance=paths.provenance(),
    log:
        "results/logs/nvidia_metrics/{run}.log",
    benchmark:
        "results/benchmarks/nvidia_metrics/{run}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
    conda:
        ENV
    container:
        CONTAINER
    params:
        train_dir=subpath(input.model, parent=True),
        ims_per_batch=lambda wildcards: nvidia.global_batch(
            run_config(config, wildcards.run)
        ),
        settings=nvidia_provenance_settings,
        annotations=run_split("train_split", "annotations"),
    shell:
        "python scripts/nvidia_metrics.py --train-dir {params.train_dir:q}"
        " --ims-per-batch {params.ims_per_batch} --settings {params.settings:q}"
        " --image-record {input.nvidia_image_record:q} --hash {params.annotations:q}"
        " --out {output.metrics:q} --provenance {output.provenance:q} > {log} 2>&1"


# eval.sh: inference and NVIDIA's own COCO evaluation, which writes the detections (bbox.json,
# segm.json) and logs its box and mask AP (dllogger.json). Our evaluate rule then computes the
# same 12 stats, per-category AP and PR curves for both engines from predictions.json.
rule test_nvidia:
    input:
        unpack(nvidia_image_inputs),
        unpack(nvidia_test_inputs),
    output:
        directory(nvidia.eval_dir("{run}", "{split}")),
    log:
        "results/logs/test_nvidia/{run}.{split}.log",
    benchmark:
        "results/benchmarks/test_nvidia/{run}.{split}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
    conda:
        ENV
    threads: train_threads
    resources:
        gpu=prediction_resource("gpu"),
        mem_mb=prediction_resource("mem_mb"),
        runtime=prediction_resource("runtime"),
    params:
        container=nvidia_exec,
        command=nvidia_test_command,
    shell:
        "mkdir -p {output:q} && {params.container} {params.command} > {log} 2>&1"


rule nvidia_predictions:
    input:
        unpack(image_inputs),
        nvidia=rules.test_nvidia.output[0],
        code=code("nvidia_predictions"),
    output:
        predictions=paths.eval_file("predictions.json"),
        reported=paths.eval_file("nvidia_eval.json"),
    log:
        "results/logs/nvidia_predictions/{run}.{split}.log",
    benchmark:
        "results/benchmarks/nvidia_predictions/{run}.{split}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
    conda:
        ENV
    container:
        CONTAINER
    params:
        name=lambda wildcards: nvidia.catalog_name(wildcards.split),
    shell:
        "python scripts/nvidia_predictions.py --eval-dir {input.nvidia:q}"
        " --dataset-name {params.name} --out {output.predictions:q}"
        " --summary {output.reported:q} > {log} 2>&1"


# train_benchmark.sh: the run's training for nvidia.benchmark.train_iterations iterations.
rule benchmark_train_nvidia:
    input:
        unpack(nvidia_image_inputs),
        unpack(nvidia_train_inputs),
    output:
        directory(nvidia.benchmark_dir("{run}", "train")),
    log:
        "results/logs/benchmark_train_nvidia/{run}.log",
    benchmark:
        "results/benchmarks/benchmark_train_nvidia/{run}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
    conda:
        ENV
    threads: train_threads
    resources:
        runtime=120,
        mem_mb=train_resource("mem_mb"),
        gpu=train_resource("gpu"),
    params:
        container=nvidia_exec,
        command=lambda wildcards: shlex.join(
            nvidia.train_benchmark_command(
                wildcards.run, run_config(config, wildcards.run)
            )
        ),
    shell:
        "mkdir -p {output:q} && {params.container} {params.command} > {log} 2>&1"


# inference_benchmark.sh: one GPU, --skip-eval, the trained weights, one batch size.
rule benchmark_inference_nvidia:
    input:
        unpack(nvidia_image_inputs),
        unpack(nvidia_test_inputs),
    output:
        directory(f"{nvidia.benchmark_dir('{run}', 'inference')}/bs{{batch}}"),
    log:
        "results/logs/benchmark_inference_nvidia/{run}.bs{batch}.log",
    benchmark:
        "results/benchmarks/benchmark_inference_nvidia/{run}.bs{batch}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
        batch=r"[0-9]+",
    conda:
        ENV
    threads: 4
    resources:
        gpu=1,
        runtime=60,
    params:
        container=nvidia_exec,
        command=nvidia_inference_benchmark_command,
    shell:
        "mkdir -p {output:q} && {params.container} {params.command} > {log} 2>&1"


# Their benchmark logs as the JSON of scripts/benchmark_train.py / benchmark_inference.py.
rule nvidia_benchmark:
    input:
        unpack(image_inputs),
        logs=nvidia_benchmark_inputs,
        code=code("nvidia_benchmark"),
    output:
        f"{nvidia.benchmark_dir('{run}', '{kind}')}.json",
    log:
        "results/logs/nvidia_benchmark/{run}.{kind}.log",
    benchmark:
        "results/benchmarks/nvidia_benchmark/{run}.{kind}.tsv"
    wildcard_constraints:
        run=runs_of("nvidia"),
        kind="train|inference",
    conda:
        ENV
    container:
        CONTAINER
    params:
        precision=run_setting("precision"),
        channels_last=run_setting("channels_last"),
    shell:
        "python scripts/nvidia_benchmark.py {wildcards.kind} {input.logs:q}"
        " --precision {params.precision} --channels-last {params.channels_last}"
        " --out {output:q} > {log} 2>&1"
