# Reports: figures, tables and summary.md of each run, then the comparison across runs. Every
# figure and table is marked for `snakemake --report` (captions in report/, one category per
# run); a figure with nothing to show is written as a panel that says why.


include: "helpers/report.smk"


rule report:
    input:
        unpack(report_inputs),
        unpack(image_inputs),
    output:
        summary=f"{paths.report_dir()}/summary.md",
        metrics=f"{paths.report_dir()}/metrics.csv",
        metrics_html=run_report_item(
            "metrics.html", "metrics", "1. Metrics", "final COCO metrics"
        ),
        losses=run_report_item("losses.png", "losses", "2. Training", "losses"),
        lr=run_report_item("lr.png", "lr", "2. Training", "learning rate"),
        throughput=run_report_item(
            "throughput.png", "throughput", "2. Training", "images/s and data time"
        ),
        ap_vs_iteration=run_report_item(
            "ap_vs_iteration.png",
            "ap_vs_iteration",
            "2. Training",
            "AP during training",
        ),
        per_category=run_report_item(
            "per_category_ap.png",
            "per_category_ap",
            "3. Evaluation",
            "AP per category",
        ),
        pr_curves=run_report_item(
            "pr_curves.png", "pr_curves", "3. Evaluation", "precision-recall curves"
        ),
        predictions=run_report_item(
            "predictions.png", "predictions", "3. Evaluation", "example predictions"
        ),
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
        images=run_split("eval_split", "images"),
        annotations=run_split("eval_split", "annotations"),
        out_dir=subpath(output.summary, parent=True),
    shell:
        "python scripts/report.py --run-name {wildcards.run} --out-dir {params.out_dir:q}"
        " --metrics-log {input.metrics_log:q} --metrics {input.metrics:q}"
        " --predictions {input.predictions:q} --annotations {params.annotations:q}"
        " --images {params.images:q} --per-category-csv {input.per_category:q}"
        " --pr-curves-csv {input.pr_curves:q} --provenance {input.provenance:q}"
        " --num-examples {params.num_examples} --score-threshold {params.score_threshold}"
        " --placeholders > {log} 2>&1"


rule compare:
    input:
        unpack(image_inputs),
        unpack(comparison_inputs),
    output:
        summary=f"{paths.COMPARISON_DIR}/comparison.md",
        csv=f"{paths.COMPARISON_DIR}/comparison.csv",
        table=comparison_item("comparison.html", "comparison", "table of all runs"),
        ap=comparison_item("ap.png", "compare_ap", "AP, AP50, AP75"),
        ap_by_size=comparison_item("ap_by_size.png", "compare_ap_by_size", "AP by size"),
        speed=comparison_item(
            "speed.png", "compare_speed", "training time and images/s"
        ),
        losses=comparison_item("losses.png", "compare_losses", "training loss"),
        ap_vs_iteration=comparison_item(
            "ap_vs_iteration.png", "compare_ap_vs_iteration", "AP during training"
        ),
    log:
        "results/logs/compare/compare.log",
    benchmark:
        "results/benchmarks/compare/compare.tsv"
    conda:
        ENV
    container:
        CONTAINER
    params:
        runs=comparison_run_args,
        run_info=as_json(comparison_run_info(config)),
        references=as_json(config["report"]["references"]),
        out_dir=subpath(output.summary, parent=True),
    shell:
        "python scripts/compare.py --out-dir {params.out_dir:q} {params.runs}"
        " --run-info {params.run_info:q} --references {params.references:q} --placeholders"
        " > {log} 2>&1"
