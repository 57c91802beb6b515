"""The cross-run comparison (``results/report/``): one table row per run, charts across runs.

It answers "how do the runs compare" with the very numbers of the per-run reports: the final
COCO stats from each run's ``metrics.json`` and the training headline numbers from its
``metrics.jsonl`` (:func:`~maskrcnn_pipeline.metrics_log.training_summary`). Published
results (by default NVIDIA's COCO 2017 numbers, see the schema's ``report.references``) are
drawn as reference lines, but only when a compared run was trained on a dataset they were
measured on: a line at 0.376 means nothing beside a run on the synthetic shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_text_atomic
from maskrcnn_pipeline.metrics_log import TrainingLog, read_metrics_log, training_summary
from maskrcnn_pipeline.report.comparison_figures import comparison_figure_specs
from maskrcnn_pipeline.report.figures import DrawnFigures, draw_all
from maskrcnn_pipeline.report.summary import format_duration
from maskrcnn_pipeline.report.tables import (
    IOU_TYPES,
    MISSING,
    format_stat,
    markdown_table,
    metrics_table,
    read_coco_metrics,
    stats_are_percent,
    write_csv_atomic,
    write_html_tables,
)

logger = logging.getLogger(__name__)

TABLE_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
"""The stats compared across runs: the AR values add little to a side-by-side view."""
INFO_COLUMNS = ("dataset", "eval_split", "engine", "gpus", "precision")
"""What the workflow says about each run (from the config), shown beside its numbers."""
COMPARISON_CSV = "comparison.csv"
COMPARISON_HTML = "comparison.html"
COMPARISON_MD = "comparison.md"


@dataclass(frozen=True)
class RunInputs:
    """Where one run's numbers are, and what the config says about it (INFO_COLUMNS)."""

    name: str
    metrics: Path
    metrics_log: Path
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResults:
    """One run's final stats (metrics_table) and training log, read and checked."""

    name: str
    info: Mapping[str, Any]
    metrics: pd.DataFrame
    log: TrainingLog


@dataclass(frozen=True)
class Reference:
    """A published result: AP per iou type, valid for runs on one of ``datasets``."""

    label: str
    datasets: tuple[str, ...]
    ap: Mapping[str, float]

    @classmethod
    def from_config(cls, entry: Mapping[str, Any], where: str) -> Reference:
        """Build from a ``report.references`` entry; a malformed one is named by position."""
        try:
            ap = {t: float(entry[t]) for t in IOU_TYPES if entry.get(t) is not None}
            return cls(str(entry["label"]), tuple(map(str, entry["datasets"])), ap)
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(
                f"{where}: a reference needs label, datasets and bbox and/or segm AP ({exc})"
            ) from exc

    def applies_to(self, runs: Sequence[RunResults]) -> bool:
        """Whether some run was trained and evaluated on one of the reference's datasets."""
        return any(run.info.get("dataset") in self.datasets for run in runs)


def read_runs(inputs: Sequence[RunInputs]) -> list[RunResults]:
    """Read every run's metrics.json and metrics.jsonl; run names must be unique."""
    if not inputs:
        raise PipelineError("no runs to compare: give at least one run")
    names = [run.name for run in inputs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PipelineError(f"run name(s) given more than once: {', '.join(duplicates)}")
    return [
        RunResults(
            name=run.name,
            info=dict(run.info),
            metrics=metrics_table(read_coco_metrics(Path(run.metrics))),
            log=read_metrics_log(Path(run.metrics_log)),
        )
        for run in inputs
    ]


def comparison_table(runs: Sequence[RunResults]) -> pd.DataFrame:
    """One row per run (the index, in the given order): config info, the six AP stats per
    iou type as ``<iou_type>_<stat>`` (NaN when not evaluated), and the training numbers.

    Machine-readable on purpose (comparison.csv); :func:`display_sections` formats it.
    """
    rows = []
    for run in runs:
        row: dict[str, Any] = {column: run.info.get(column) for column in INFO_COLUMNS}
        for iou_type in IOU_TYPES:
            for stat in TABLE_STATS:
                present = iou_type in run.metrics.index
                row[f"{iou_type}_{stat}"] = run.metrics.at[iou_type, stat] if present else None
        summary = training_summary(run.log)
        row["iterations"] = summary["iterations"]
        row["training_seconds"] = summary["seconds"]
        row["images_per_s"] = summary["images_per_s"]
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index([run.name for run in runs], name="run"))
    stats = [f"{t}_{s}" for t in IOU_TYPES for s in TABLE_STATS]
    numeric = [*stats, "iterations", "training_seconds", "images_per_s"]
    return table.astype({column: "float64" for column in numeric})


def display_sections(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table as three readable (heading, frame of strings) sections: box AP, mask AP
    (both with the run's dataset), and training (engine, GPUs, time, speed)."""
    percent = stats_are_percent(table[[f"{t}_{s}" for t in IOU_TYPES for s in TABLE_STATS]])
    sections = []
    for iou_type, heading in (("bbox", "Box AP (bbox)"), ("segm", "Mask AP (segm)")):
        frame = pd.DataFrame(index=table.index)
        frame["dataset"] = [_text(v) for v in table["dataset"]]
        for stat in TABLE_STATS:
            frame[stat] = [format_stat(v, percent=percent) for v in table[f"{iou_type}_{stat}"]]
        sections.append((heading, frame))
    training = pd.DataFrame(index=table.index)
    # torchvision (this pipeline) or nvidia (NVIDIA's own code): what trained the run
    training["engine"] = [_text(v) for v in table["engine"]]
    training["GPUs"] = [_gpus(v) for v in table["gpus"]]
    training["precision"] = [_text(v) for v in table["precision"]]
    training["iterations"] = [_number(v, "{:.0f}") for v in table["iterations"]]
    training["training time"] = [
        MISSING if pd.isna(v) else format_duration(v) for v in table["training_seconds"]
    ]
    training["images / s"] = [_number(v, "{:.2f}") for v in table["images_per_s"]]
    sections.append(("Training", training))
    return sections


def _text(value: Any) -> str:
    return MISSING if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _number(value: float, template: str) -> str:
    return MISSING if pd.isna(value) else template.format(value)


def _gpus(value: Any) -> str:
    """GPU count as configured; 0 means the run trained on the CPU."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return MISSING
    return "0 (CPU)" if int(value) == 0 else str(int(value))


def build_comparison(
    *,
    out_dir: Path,
    runs: Sequence[RunInputs],
    references: Sequence[Mapping[str, Any]] = (),
    placeholders: bool = False,
) -> list[Path]:
    """Write comparison.csv, comparison.html, the figures and comparison.md into ``out_dir``;
    return the files written, comparison.md last.

    With ``placeholders``, a figure with nothing to show is written as a panel giving the
    reason (the workflow declares every figure as an output).
    """
    out_dir = Path(out_dir)
    results = read_runs(runs)
    parsed = [
        Reference.from_config(entry, f"references[{index}]")
        for index, entry in enumerate(references)
    ]
    applicable = [reference for reference in parsed if reference.applies_to(results)]
    table = comparison_table(results)
    sections = display_sections(table)
    notes = _reference_notes(parsed, applicable)

    written = [write_csv_atomic(table, out_dir / COMPARISON_CSV)]
    written.append(
        write_html_tables(
            out_dir / COMPARISON_HTML,
            title=f"Comparison of {len(results)} run(s)",
            sections=sections,
            notes=[
                f"{MISSING}: not evaluated, not logged, or no object of that size.",
                "training time: wall clock of the training loop; images / s: median.",
                *notes,
            ],
        )
    )
    drawn = draw_all(
        comparison_figure_specs(results, table, applicable), out_dir, placeholders=placeholders
    )
    written += drawn.written
    page = _markdown_page(results, sections, drawn, notes)
    write_text_atomic(out_dir / COMPARISON_MD, page)
    written.append(out_dir / COMPARISON_MD)
    logger.info("compared %d run(s) into %s", len(results), out_dir)
    return written


def _reference_notes(parsed: Sequence[Reference], applicable: Sequence[Reference]) -> list[str]:
    """Which published results are drawn, and which are not and why, in one line each."""
    notes = []
    for reference in parsed:
        values = ", ".join(f"{t} AP {v:.4f}" for t, v in reference.ap.items())
        if reference in applicable:
            notes.append(f"Reference line: {reference.label} ({values}).")
        else:
            notes.append(
                f"Not drawn: {reference.label} ({values}); no compared run uses dataset "
                f"{' or '.join(reference.datasets)}."
            )
    return notes


def _markdown_page(
    runs: Sequence[RunResults],
    sections: Sequence[tuple[str, pd.DataFrame]],
    drawn: DrawnFigures,
    notes: Sequence[str],
) -> str:
    """comparison.md: the tables, the reference lines, every figure, and what was skipped."""
    parts = [f"# Comparison of {len(runs)} run(s)"]
    for heading, frame in sections:
        rows = [[name, *values] for name, values in zip(frame.index, frame.to_numpy(), strict=True)]
        parts.append(f"## {heading}\n\n" + markdown_table(["run", *frame.columns], rows))
    parts.append(
        f"{MISSING}: not evaluated, not logged, or no object of that size. All values: "
        f"[{COMPARISON_CSV}]({COMPARISON_CSV}). Per-run details: "
        + ", ".join(f"[{run.name}](../{run.name}/report/summary.md)" for run in runs)
        + "."
    )
    if notes:
        parts.append("## Published results\n\n" + "\n".join(f"- {note}" for note in notes))
    parts.append("## Figures")
    parts += [f"### {s.title}\n\n[![{s.title}]({s.name})]({s.name})" for s in drawn.shown]
    skipped = "\n".join(f"- `{name}`: {reason}" for name, reason in drawn.skipped)
    parts.append("## Skipped\n\n" + (skipped or "Nothing was skipped."))
    return "\n\n".join(parts) + "\n"
