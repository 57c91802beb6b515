"""summary.md: the page a person reads first; it links every figure and says what is missing.

It is rendered from its inputs only (no timestamp, no host name), so the same inputs give the
same file and a diff between two reports shows only what really changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from maskrcnn_pipeline.metrics_log import TrainingLog, eval_history, training_summary
from maskrcnn_pipeline.provenance import sha256_file
from maskrcnn_pipeline.report.tables import (
    IOU_TYPES,
    MISSING,
    format_stat,
    markdown_table,
    stats_are_percent,
    stats_markdown,
)

FINAL_LOSS_WINDOW = 20
"""Final losses are also shown averaged over this many last logged iterations: one value is
noisy enough to mislead a comparison."""
NOT_LOGGED = "not logged"
DETAILS_ROWS = 16
"""A provenance group with more rows than this is shown collapsed (see provenance_section)."""


@dataclass(frozen=True)
class Skipped:
    """An output the report did not write, and the reason, for the summary's list."""

    name: str
    reason: str


@dataclass(frozen=True)
class FigureLink:
    """A written figure: its file name (relative to summary.md) and a human title."""

    name: str
    title: str


def render_summary(
    *,
    run_name: str,
    metrics: pd.DataFrame,
    log: TrainingLog,
    figures: Sequence[FigureLink],
    skipped: Sequence[Skipped],
    provenance: Mapping[str, Any] | None,
    inputs: Mapping[str, Path | None],
) -> str:
    """The whole summary.md as text, one section per helper."""
    sections = [
        f"# Run report: {run_name}",
        metrics_section(metrics),
        training_section(log),
        evaluation_history_section(log),
        losses_section(log),
        figures_section(figures),
        skipped_section(skipped),
        provenance_section(provenance),
        inputs_section(inputs),
    ]
    return "\n\n".join(sections) + "\n"


def metrics_section(metrics: pd.DataFrame) -> str:
    """The 12 COCO stats per iou type, and which of bbox/segm the evaluation did not produce."""
    lines = ["## Final metrics"]
    if metrics.empty:
        lines.append("metrics.json holds no iou type: nothing was evaluated.")
    else:
        lines.append(stats_markdown(metrics))
        lines.append(
            f"{MISSING}: COCO reports -1 when the split has no object of that size. "
            "All values: [metrics.csv](metrics.csv)."
        )
    absent = [t for t in IOU_TYPES if t not in metrics.index]
    if absent:
        lines.append(f"Not in metrics.json: {', '.join(absent)}.")
    return "\n\n".join(lines)


def training_section(log: TrainingLog) -> str:
    """How long and how fast the run trained (see metrics_log.training_summary)."""
    summary = training_summary(log)
    rows = [
        ["iterations", _shown(summary["iterations"], "{:.0f}")],
        ["training time (wall)", _shown(summary["seconds"], None)],
        ["images / s (median)", _shown(summary["images_per_s"], "{:.2f}")],
        ["data time, s / iteration (median)", _shown(summary["data_time"], "{:.4f}")],
        ["peak GPU memory, MB", _shown(summary["max_memory_mb"], "{:.0f}")],
    ]
    return "## Training\n\n" + markdown_table(["measure", "value"], rows)


def _shown(value: float | None, template: str | None) -> str:
    """A summary number formatted, a duration when ``template`` is None, or 'not logged'."""
    if value is None:
        return NOT_LOGGED
    return format_duration(value) if template is None else template.format(value)


def evaluation_history_section(log: TrainingLog) -> str:
    """AP at each periodic evaluation during training, or a plain statement that there was none.

    Said in words because an absent figure is easy to miss: without periodic evaluation the
    final metrics above are the only measurement of the model.
    """
    history = eval_history(log)
    if history.empty:
        return (
            "## AP during training\n\n"
            f"This run had no periodic evaluation ({log.path.name} has no eval lines): the "
            "final metrics above, of the final model, are its only AP."
        )
    percent = stats_are_percent(history)
    rows = [
        [int(iteration), *(format_stat(value, percent=percent) for value in values)]
        for iteration, values in zip(history.index, history.to_numpy(), strict=True)
    ]
    header = ["iteration", *(f"{iou_type} AP" for iou_type in history.columns)]
    return (
        "## AP during training\n\n"
        f"{len(history)} periodic evaluation(s) logged in {log.path.name}:\n\n"
        + markdown_table(header, rows)
    )


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1 h 02 min 05 s``: hours of training are easier to read than seconds."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def losses_section(log: TrainingLog) -> str:
    """The last logged value of every loss and its mean over the last few logged iterations."""
    rows = []
    for column in log.loss_columns():
        values = log.training[column].dropna()
        if not values.empty:
            tail = values.tail(FINAL_LOSS_WINDOW)
            rows.append([column, f"{values.iloc[-1]:.4f}", f"{tail.mean():.4f}"])
    if not rows:
        return f"## Final losses\n\n{log.path.name} logged no losses."
    header = ["loss", "last", f"mean of last {FINAL_LOSS_WINDOW} logged"]
    return "## Final losses\n\n" + markdown_table(header, rows)


def figures_section(figures: Iterable[FigureLink]) -> str:
    """Each figure under its title, embedded (which is also a link) so the page reads alone."""
    parts = ["## Figures"]
    parts += [f"### {f.title}\n\n[![{f.title}]({f.name})]({f.name})" for f in figures]
    return "\n\n".join(parts)


def skipped_section(skipped: Sequence[Skipped]) -> str:
    """What the report left out and why, so a missing figure is never a silent surprise."""
    if not skipped:
        return "## Skipped\n\nNothing was skipped."
    return "## Skipped\n\n" + "\n".join(f"- `{s.name}`: {s.reason}" for s in skipped)


def provenance_section(provenance: Mapping[str, Any] | None) -> str:
    """provenance.json flattened to ``dotted.key | value`` rows, whatever keys it holds.

    The short groups (git commit, container, packages, checksums, hardware) come first in one
    table; a group of more than DETAILS_ROWS rows (the run's full settings) follows in a
    collapsed block, so the facts one looks for are not buried under 70 settings.
    """
    if provenance is None:
        return "## Provenance\n\nNo provenance.json was given."
    groups = {key: flatten({key: value}) for key, value in provenance.items()}
    if not groups:
        return "## Provenance\n\nprovenance.json is empty."
    short = [row for rows in groups.values() if len(rows) <= DETAILS_ROWS for row in rows]
    parts = ["## Provenance"]
    if short:
        parts.append(markdown_table(["key", "value"], short, numeric=False))
    for key, rows in groups.items():
        if len(rows) > DETAILS_ROWS:
            table = markdown_table(["key", "value"], rows, numeric=False)
            parts.append(
                f"<details><summary>{key} ({len(rows)} values)</summary>\n\n{table}\n\n</details>"
            )
    return "\n\n".join(parts)


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts become dotted keys; lists and scalars are shown as compact JSON."""
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(flatten(value, prefix=f"{name}."))
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    return rows


def inputs_section(inputs: Mapping[str, Path | None]) -> str:
    """The files the report was made from, with their SHA-256 (so the evaluation split's
    annotation file is identified too), to trace a figure back to its data."""
    return "## Inputs\n\n" + "\n".join(
        f"- {name}: {_described(path)}" for name, path in inputs.items()
    )


def _described(path: Path | None) -> str:
    if path is None:
        return "not given"
    path = Path(path)
    if path.is_file():
        return f"`{path}` (sha256 {sha256_file(path)})"
    return f"`{path}`" + ("" if path.is_dir() else " (missing)")
