"""The per-run report: every figure, metrics.csv and summary.md for one trained, evaluated run.

Figures are listed once, as (file, title, builder); a builder that finds nothing to draw, or
whose optional input was not given, raises NothingToPlot, and the report records the reason
instead of failing (and, with ``placeholders``, writes a figure stating it: the workflow
declares every figure as an output). Real problems in the inputs (a malformed line, a broken
CSV) still stop it with a PipelineError.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import read_json, write_text_atomic
from maskrcnn_pipeline.metrics_log import TrainingLog, read_metrics_log
from maskrcnn_pipeline.report.category_ap import per_category_figure, read_per_category
from maskrcnn_pipeline.report.figures import FigureSpec, NothingToPlot, draw_all
from maskrcnn_pipeline.report.pr_curves import pr_curves_figure, read_pr_curves
from maskrcnn_pipeline.report.predictions_figure import example_predictions_figure
from maskrcnn_pipeline.report.summary import FigureLink, Skipped, render_summary
from maskrcnn_pipeline.report.tables import (
    MISSING,
    formatted_stats,
    metrics_table,
    read_coco_metrics,
    write_csv_atomic,
    write_html_tables,
)
from maskrcnn_pipeline.report.training_curves import (
    ap_vs_iteration_figure,
    learning_rate_figure,
    loss_figure,
    throughput_figure,
)

logger = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
METRICS_HTML = "metrics.html"
SUMMARY_MD = "summary.md"


def build_run_report(
    *,
    run_name: str,
    out_dir: Path,
    metrics_log: Path,
    metrics: Path,
    predictions: Path | None,
    annotations: Path | None,
    images: Path | None,
    per_category_csv: Path | None = None,
    pr_curves_csv: Path | None = None,
    provenance: Path | None = None,
    num_examples: int = 6,
    score_threshold: float = 0.5,
    placeholders: bool = False,
) -> list[Path]:
    """Write the report into ``out_dir`` and return the files written, summary.md last.

    ``metrics_log`` and ``metrics`` are required; every other input is optional and its
    figure or section is skipped, with the reason in summary.md, when it is None or absent.
    With ``placeholders``, a skipped figure is still written, as a panel giving the reason.
    """
    _check_options(num_examples, score_threshold)
    out_dir = Path(out_dir)
    log = read_metrics_log(Path(metrics_log))
    table = metrics_table(read_coco_metrics(Path(metrics)))

    specs = [
        *_training_specs(log),
        *_evaluation_specs(per_category_csv, pr_curves_csv),
        FigureSpec(
            "predictions.png",
            "Example predictions",
            lambda: _predictions(predictions, annotations, images, num_examples, score_threshold),
        ),
    ]
    drawn = draw_all(specs, out_dir, placeholders=placeholders)
    written = drawn.written
    shown = [FigureLink(spec.name, spec.title) for spec in drawn.shown]
    skipped = [Skipped(name, reason) for name, reason in drawn.skipped]
    written.append(write_csv_atomic(table, out_dir / METRICS_CSV))
    written.append(
        write_html_tables(
            out_dir / METRICS_HTML,
            title=f"{run_name}: final COCO metrics",
            sections=[("", formatted_stats(table))],
            notes=[f"{MISSING}: COCO reports -1 when the split has no object of that size."],
        )
    )

    provenance_data = _read_provenance(provenance, skipped)
    summary = render_summary(
        run_name=run_name,
        metrics=table,
        log=log,
        figures=shown,
        skipped=skipped,
        provenance=provenance_data,
        inputs={
            "metrics_log": metrics_log,
            "metrics": metrics,
            "predictions": predictions,
            "annotations": annotations,
            "images": images,
            "per_category_csv": per_category_csv,
            "pr_curves_csv": pr_curves_csv,
            "provenance": provenance,
        },
    )
    write_text_atomic(out_dir / SUMMARY_MD, summary)
    written.append(out_dir / SUMMARY_MD)
    return written


def _check_options(num_examples: int, score_threshold: float) -> None:
    """Reject impossible options before any work, rather than drawing a misleading figure."""
    if num_examples < 0:
        raise PipelineError(f"num_examples must be 0 or more, got {num_examples}")
    if not 0.0 <= score_threshold <= 1.0:
        raise PipelineError(f"score_threshold must lie in [0, 1], got {score_threshold}")


def _training_specs(log: TrainingLog) -> list[FigureSpec]:
    """The figures drawn from metrics.jsonl alone."""
    return [
        FigureSpec("losses.png", "Training losses", lambda: loss_figure(log)),
        FigureSpec("lr.png", "Learning rate", lambda: learning_rate_figure(log)),
        FigureSpec("throughput.png", "Throughput", lambda: throughput_figure(log)),
        FigureSpec(
            "ap_vs_iteration.png", "AP during training", lambda: ap_vs_iteration_figure(log)
        ),
    ]


def _evaluation_specs(
    per_category_csv: Path | None, pr_curves_csv: Path | None
) -> list[FigureSpec]:
    """The figures drawn from the evaluation's optional CSVs."""
    return [
        FigureSpec(
            "per_category_ap.png",
            "AP of the best and worst categories",
            lambda: per_category_figure(
                read_per_category(_optional(per_category_csv, "per_category_csv"))
            ),
        ),
        FigureSpec(
            "pr_curves.png",
            "Precision-recall curves",
            lambda: pr_curves_figure(read_pr_curves(_optional(pr_curves_csv, "pr_curves_csv"))),
        ),
    ]


def _optional(path: Path | None, option: str) -> Path:
    """``path`` when it names an existing file; otherwise the reason to skip its figure."""
    if path is None:
        raise NothingToPlot(f"{option} not given")
    path = Path(path)
    if not path.exists():
        raise NothingToPlot(f"{option} {path} does not exist")
    return path


def _predictions(
    predictions: Path | None,
    annotations: Path | None,
    images: Path | None,
    num_examples: int,
    score_threshold: float,
) -> Figure:
    """The example grid, once each of its three inputs is known to be there."""
    if num_examples == 0:
        raise NothingToPlot("num_examples is 0")
    return example_predictions_figure(
        predictions=_optional(predictions, "predictions"),
        annotations=_optional(annotations, "annotations"),
        images=_optional(images, "images"),
        num_examples=num_examples,
        score_threshold=score_threshold,
    )


def _read_provenance(path: Path | None, skipped: list[Skipped]) -> dict[str, Any] | None:
    """provenance.json as a dict, or None (noted among the skipped) when it is not there."""
    try:
        path = _optional(path, "provenance")
    except NothingToPlot as reason:
        skipped.append(Skipped("provenance section", str(reason)))
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a JSON object (git commit, config, versions...)")
    return data
