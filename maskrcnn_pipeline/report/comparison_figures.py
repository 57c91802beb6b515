"""The charts of the cross-run comparison: AP, AP by object size, training speed, loss curves
and AP during training, one colour per run throughout.

Builders take what :mod:`maskrcnn_pipeline.report.comparison` read and raise NothingToPlot when
no run has what they need, like the per-run figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from maskrcnn_pipeline.metrics_log import eval_history
from maskrcnn_pipeline.report.figures import (
    FigureSpec,
    NothingToPlot,
    new_figure,
    smooth,
    style_axes,
)
from maskrcnn_pipeline.report.tables import IOU_TYPES, stats_are_percent

if TYPE_CHECKING:
    from maskrcnn_pipeline.report.comparison import Reference, RunResults

STAT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c")
"""Colours of the three stats in a grouped bar chart (AP, AP50, AP75 or APs, APm, APl)."""
REFERENCE_COLOR = "#444444"
MAX_LABEL = 18
"""Run names longer than this are cut on the x axis (the table has them in full)."""


def comparison_figure_specs(
    runs: Sequence[RunResults], table: pd.DataFrame, references: Sequence[Reference]
) -> list[FigureSpec]:
    """Every figure of the comparison, in the order comparison.md shows them."""
    return [
        FigureSpec(
            "ap.png",
            "AP, AP50 and AP75 per run",
            lambda: stats_bars_figure(table, ("AP", "AP50", "AP75"), references),
        ),
        FigureSpec(
            "ap_by_size.png",
            "AP by object size (small, medium, large)",
            lambda: stats_bars_figure(table, ("APs", "APm", "APl"), ()),
        ),
        FigureSpec("speed.png", "Training time and throughput", lambda: speed_figure(table)),
        FigureSpec("losses.png", "Total training loss", lambda: loss_figure(runs)),
        FigureSpec(
            "ap_vs_iteration.png",
            "AP during training",
            lambda: ap_history_figure(runs, references),
        ),
    ]


def run_colors(names: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One fixed colour per run, by its position in the config (the same in every figure)."""
    palette = colormaps["tab10"].colors
    return {name: palette[index % len(palette)] for index, name in enumerate(names)}


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "\u2026"


def _draw_references(ax: Axes, references: Sequence[Reference], iou_type: str) -> None:
    """A dashed horizontal line per published AP of this iou type, labelled with its value."""
    for reference in references:
        if iou_type in reference.ap:
            value = reference.ap[iou_type]
            ax.axhline(
                value,
                color=REFERENCE_COLOR,
                linestyle="--",
                linewidth=1.2,
                label=f"{reference.label}: {value:.4f}",
            )


def stats_bars_figure(
    table: pd.DataFrame, stats: Sequence[str], references: Sequence[Reference]
) -> Figure:
    """Grouped bars of ``stats`` per run, one panel per evaluated iou type; references as
    dashed lines (they are APs, so they belong with the AP group)."""
    iou_types = [t for t in IOU_TYPES if table[[f"{t}_{s}" for s in stats]].notna().any().any()]
    if not iou_types:
        raise NothingToPlot(f"no run has {'/'.join(stats)} in its metrics.json")
    columns = [f"{t}_{s}" for t in iou_types for s in stats]
    limit = 100.0 if stats_are_percent(table[columns]) else 1.0
    runs = list(table.index)
    width = 0.8 / len(stats)
    fig, axes = new_figure(
        1, len(iou_types), panel_size=(max(4.2, 1.1 * len(runs) + 1.6), 3.6), sharey=True
    )
    for ax, iou_type in zip(axes.flat, iou_types, strict=True):
        positions = np.arange(len(runs))
        for index, stat in enumerate(stats):
            values = table[f"{iou_type}_{stat}"].where(lambda v: v >= 0)
            bars = ax.bar(
                positions + (index - (len(stats) - 1) / 2) * width,
                values.fillna(0),
                width,
                label=stat,
                color=STAT_COLORS[index % len(STAT_COLORS)],
            )
            labels = ["n/a" if pd.isna(v) else f"{v:.3g}" for v in values]
            ax.bar_label(bars, labels=labels, fontsize=6, padding=1)
        _draw_references(ax, references, iou_type)
        ax.set_xticks(positions, [_short(name) for name in runs], rotation=20, ha="right")
        ax.set_ylim(0, limit * 1.05)
        style_axes(ax, title=f"{iou_type}: {', '.join(stats)}", xlabel="", ylabel="value")
        ax.legend(fontsize=7, loc="upper left")
    return fig


def speed_figure(table: pd.DataFrame) -> Figure:
    """Training time (hours or minutes) beside median images/s, bars labelled with the GPUs."""
    seconds = table["training_seconds"]
    speed = table["images_per_s"]
    if seconds.isna().all() and speed.isna().all():
        raise NothingToPlot("no run logged 'seconds' or 'images_per_s' in its metrics.jsonl")
    hours = seconds.max() >= 2 * 3600
    duration = seconds / (3600 if hours else 60)
    runs = list(table.index)
    colors = list(run_colors(runs).values())
    gpus = [
        "" if pd.isna(g) else ("CPU" if int(g) == 0 else f"{int(g)} GPU") for g in table["gpus"]
    ]
    fig, axes = new_figure(1, 2, panel_size=(max(4.0, 0.9 * len(runs) + 1.6), 3.4))
    panels = (
        (duration, "Training time", "hours" if hours else "minutes", "{:.2f}"),
        (speed, "Throughput (median)", "images / s", "{:.1f}"),
    )
    for ax, (values, title, unit, template) in zip(axes.flat, panels, strict=True):
        bars = ax.bar(range(len(runs)), values.fillna(0), color=colors)
        labels = [
            "not logged" if pd.isna(v) else f"{template.format(v)}\n{g}".strip()
            for v, g in zip(values, gpus, strict=True)
        ]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
        ax.set_xticks(range(len(runs)), [_short(name) for name in runs], rotation=20, ha="right")
        ax.margins(y=0.25)
        style_axes(ax, title=title, xlabel="", ylabel=unit)
    return fig


def loss_figure(runs: Sequence[RunResults]) -> Figure:
    """The smoothed total loss of every run against iteration, on one axis."""
    curves = {
        run.name: run.log.training[["iteration", "loss"]].dropna()
        for run in runs
        if "loss" in run.log.training.columns
    }
    curves = {name: curve for name, curve in curves.items() if not curve.empty}
    if not curves:
        raise NothingToPlot("no run logged 'loss' in its metrics.jsonl")
    colors = run_colors([run.name for run in runs])
    fig, axes = new_figure(panel_size=(6.4, 3.6))
    ax = axes[0, 0]
    for name, curve in curves.items():
        ax.plot(curve["iteration"], smooth(curve["loss"]), color=colors[name], label=name)
    style_axes(ax, title="Total training loss (smoothed)", xlabel="iteration", ylabel="loss")
    ax.legend(fontsize=8)
    return fig


def ap_history_figure(runs: Sequence[RunResults], references: Sequence[Reference]) -> Figure:
    """AP against iteration per run and iou type: periodic evaluations as a line, the final
    model's AP as a star at the last iteration (so a run without periodic evaluation still
    shows where it ended)."""
    colors = run_colors([run.name for run in runs])
    points = {run.name: _ap_points(run) for run in runs}
    iou_types = [t for t in IOU_TYPES if any(t in p for p in points.values())]
    if not iou_types:
        raise NothingToPlot("no run has an AP with a logged iteration")
    fig, axes = new_figure(1, len(iou_types), panel_size=(4.8, 3.6), sharey=True)
    for ax, iou_type in zip(axes.flat, iou_types, strict=True):
        for name, by_type in points.items():
            if iou_type not in by_type:
                continue
            history, final = by_type[iou_type]
            color = colors[name]
            if not history.empty:
                ax.plot(history.index, history.values, marker="o", markersize=3, color=color)
            if final is not None:
                ax.plot(*final, marker="*", markersize=11, color=color, linestyle="none")
            ax.plot([], [], color=color, label=name)
        _draw_references(ax, references, iou_type)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        style_axes(ax, title=f"{iou_type} AP (\u2605 final model)", xlabel="iteration")
        ax.legend(fontsize=7)
    return fig


def _ap_points(
    run: RunResults,
) -> dict[str, tuple[pd.Series, tuple[float, float] | None]]:
    """Per iou type: the periodic AP by iteration and the final (iteration, AP), if known."""
    history = eval_history(run.log)
    last = run.log.training["iteration"].max() if not run.log.training.empty else None
    points = {}
    for iou_type in IOU_TYPES:
        series = (
            history[iou_type].dropna() if iou_type in history.columns else pd.Series(dtype=float)
        )
        final = None
        if iou_type in run.metrics.index and last is not None and not pd.isna(last):
            value = run.metrics.at[iou_type, "AP"]
            final = (float(last), float(value)) if value >= 0 else None
        if not series.empty or final is not None:
            points[iou_type] = (series, final)
    return points
