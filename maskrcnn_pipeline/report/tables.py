"""Tables: the 12 COCO stats per iou type, checked CSV reading, CSV and Markdown writing.

Shared by the per-run report and the cross-run comparison, so a metric is read, named and
formatted the same way everywhere.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.evaluation.result import STAT_NAMES
from maskrcnn_pipeline.fileio import atomic_path, read_json, write_text_atomic

#: The 12 COCO summary stats, in COCO's order (defined once, by the evaluation).
COCO_STATS = STAT_NAMES

IOU_TYPES = ("bbox", "segm")
MISSING = "n/a"
"""Shown for a stat COCOeval reports as -1: no ground truth in that area range."""


def read_coco_metrics(path: Path) -> dict[str, dict[str, float]]:
    """Read ``eval/<split>/metrics.json``; every iou type present must carry all 12 stats.

    Iou types other than bbox and segm are kept (after them) so a keypoint run still reports.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected an object keyed by iou type (bbox, segm)")
    return {
        iou_type: _coco_stats(path, iou_type, data[iou_type])
        for iou_type in _ordered_iou_types(data)
    }


def _ordered_iou_types(keys: Iterable[str]) -> list[str]:
    keys = list(keys)
    return [t for t in IOU_TYPES if t in keys] + sorted(t for t in keys if t not in IOU_TYPES)


def _coco_stats(path: Path, iou_type: str, stats: Any) -> dict[str, float]:
    if not isinstance(stats, dict):
        raise PipelineError(f"{path}: '{iou_type}' must map stat names to numbers")
    missing = [name for name in COCO_STATS if name not in stats]
    if missing:
        raise PipelineError(f"{path}: '{iou_type}' lacks {', '.join(missing)}; rerun evaluate")
    for name in COCO_STATS:
        value = stats[name]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PipelineError(f"{path}: '{iou_type}.{name}' must be a number, got {value!r}")
    return {name: float(stats[name]) for name in COCO_STATS}


def metrics_table(metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per iou type (the index), the 12 stats as columns in COCO order."""
    frame = pd.DataFrame.from_dict(metrics, orient="index", columns=list(COCO_STATS))
    frame.index.name = "iou_type"
    return frame


def write_csv_atomic(frame: pd.DataFrame, path: Path, *, index: bool = True) -> Path:
    """Write ``frame`` as CSV under ``path`` atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)
    return path


def read_checked_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Read a CSV that must hold ``columns``; an unreadable file or a missing column is named."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: cannot read as CSV ({exc})") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PipelineError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}"
        )
    return frame


def format_stat(value: float, *, percent: bool = False) -> str:
    """Three decimals for COCO's 0-1 fractions, one for percentages; -1 or NaN as n/a."""
    if value is None or math.isnan(value) or value < 0:
        return MISSING
    return f"{value:.1f}" if percent else f"{value:.3f}"


def stats_are_percent(frame: pd.DataFrame) -> bool:
    """Whether the numbers are percentages (Detectron2 style) rather than 0-1 fractions."""
    values = frame.select_dtypes("number").to_numpy().ravel()
    return bool(len(values)) and float(pd.Series(values).max()) > 1.0


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: bool = True
) -> str:
    """A GitHub-flavoured Markdown table; the first column is left-aligned, the rest right
    when they hold numbers (``numeric``), left otherwise.

    Pipes and newlines inside cells are escaped so a stray value cannot break the table.
    """

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    align = [":--"] + ["--:" if numeric else ":--"] * (len(header) - 1)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cell(v) for v in line) + " |" for line in lines)


def formatted_stats(table: pd.DataFrame) -> pd.DataFrame:
    """The metrics table turned so stats are rows and iou types columns, as display strings:
    12 short rows read better than 13 wide columns."""
    percent = stats_are_percent(table)
    return pd.DataFrame(
        {
            t: [format_stat(table.at[t, stat], percent=percent) for stat in table.columns]
            for t in table.index
        },
        index=pd.Index(table.columns, name="stat"),
    )


def stats_markdown(table: pd.DataFrame) -> str:
    """The 12 stats per iou type as a Markdown table (see formatted_stats)."""
    shown = formatted_stats(table)
    rows = [[stat, *values] for stat, values in zip(shown.index, shown.to_numpy(), strict=True)]
    return markdown_table(["stat", *shown.columns], rows)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; font-size: 0.9em; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; }
p.note { color: #555; font-size: 0.85em; max-width: 60em; }
"""


def write_html_tables(
    path: Path,
    *,
    title: str,
    sections: Sequence[tuple[str, pd.DataFrame]],
    notes: Sequence[str] = (),
) -> Path:
    """A self-contained HTML page of (heading, table) sections, written atomically.

    For ``snakemake --report``, which shows an HTML file inline but offers a CSV only as a
    download: the numbers a reader came for must be visible at a glance. Cells are shown as
    given (format them first) and escaped; each frame's index becomes its first column.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, frame in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(frame.reset_index().to_html(index=False, border=0, na_rep=MISSING))
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    parts.append("</body></html>")
    write_text_atomic(path, "\n".join(parts) + "\n")
    return path
