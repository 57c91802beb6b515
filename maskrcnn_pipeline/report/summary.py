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

from maskrcnn_pipeline.report.metrics_log import TrainingLog
from maskrcnn_pipeline.report.tables import IOU_TYPES, MISSING, markdown_table, stats_markdown

FINAL_LOSS_WINDOW = 20
"""Final losses are also shown averaged over this many last logged iterations: one value is
noisy enough to mislead a comparison."""
NOT_LOGGED = "not logged"


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
    """How long and how fast the run trained, from the last and typical logged values."""
    training = log.training
    rows = [
        ["iterations", _stat(training, "iteration", "max", "{:.0f}")],
        ["training time (wall)", _stat(training, "seconds", "max", None)],
        ["images / s (median)", _stat(training, "images_per_s", "median", "{:.2f}")],
        ["data time, s / iteration (median)", _stat(training, "data_time", "median", "{:.4f}")],
        ["peak GPU memory, MB", _stat(training, "max_memory_mb", "max", "{:.0f}")],
    ]
    return "## Training\n\n" + markdown_table(["measure", "value"], rows)


def _stat(frame: pd.DataFrame, column: str, how: str, template: str | None) -> str:
    """One summary number of a logged column, or 'not logged'."""
    if column not in frame.columns or frame[column].dropna().empty:
        return NOT_LOGGED
    value = float(frame[column].dropna().agg(how))
    return format_duration(value) if template is None else template.format(value)


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
    """provenance.json flattened to ``dotted.key | value`` rows."""
    if provenance is None:
        return "## Provenance\n\nNo provenance.json was given."
    rows = [[key, value] for key, value in flatten(provenance)]
    if not rows:
        return "## Provenance\n\nprovenance.json is empty."
    return "## Provenance\n\n" + markdown_table(["key", "value"], rows, numeric=False)


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
    """The files the report was made from, to trace a figure back to its data."""
    lines = [
        f"- {name}: " + (f"`{path}`" if path else "not given") for name, path in inputs.items()
    ]
    return "## Inputs\n\n" + "\n".join(lines)
