# Reports: figures, tables and summary.md of each run.


rule report:
    input:
        unpack(report_inputs),
        unpack(image_inputs),
    output:
        summary="results/{run}/report/summary.md",
        metrics="results/{run}/report/metrics.csv",
        losses="results/{run}/report/losses.png",
        lr="results/{run}/report/lr.png",
        predictions="results/{run}/report/predictions.png",
    log:
        "results/logs/report/{run}.log",
    benchmark:
        "results/benchmarks/report/{run}.tsv"
    conda:
        ENV
    container:
        CONTAINER
    params:
        num_examples=config["report"]["num_examples"],
        score_threshold=config["report"]["score_threshold"],
        out_dir=subpath(output.summary, parent=True),
    shell:
        "python scripts/report.py --run-name {wildcards.run} --out-dir {params.out_dir:q}"
        " --metrics-log {input.metrics_log:q} --metrics {input.metrics:q}"
        " --predictions {input.predictions:q} --annotations {input.annotations:q}"
        " --images {input.images:q} --per-category-csv {input.per_category:q}"
        " --pr-curves-csv {input.pr_curves:q} --provenance {input.provenance:q}"
        " --num-examples {params.num_examples} --score-threshold {params.score_threshold}"
        " > {log} 2>&1"
