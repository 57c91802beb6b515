"""Figures drawn from ``train/metrics.jsonl``: losses, learning rate, throughput, AP over time.

Each builder takes a :class:`TrainingLog`, returns a Figure, and raises NothingToPlot when the
log lacks the keys it needs, so that an older or partial log still yields the other figures.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from maskrcnn_pipeline.metrics_log import TrainingLog
from maskrcnn_pipeline.report.figures import (
    NothingToPlot,
    grid_shape,
    hide_unused,
    new_figure,
    plot_smoothed,
    style_axes,
)

TOTAL_LOSS_COLOR = "#222222"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
LOG_SCALE_RATIO = 50
"""Plot the learning rate on a log axis when it spans more than this factor (warm-up from
near zero), so that the step decays stay visible instead of collapsing onto the x axis."""

THROUGHPUT_PANELS = {
    # column: (title, y label, statistic named in the title, its format)
    "images_per_s": ("Throughput", "images / s", "median", "{:.1f}"),
    "data_time": ("Time waiting for data", "s / iteration", "median", "{:.3g}"),
    "max_memory_mb": ("Peak GPU memory", "MB", "max", "{:,.0f}"),
}
AP_STATS = ("AP", "AP50", "AP75")


def logged(training: pd.DataFrame, column: str) -> pd.DataFrame:
    """The iterations at which ``column`` was logged, without the gaps other lines leave."""
    if column not in training.columns:
        return training.iloc[0:0][["iteration"]].assign(**{column: []})
    return training[["iteration", column]].dropna()


def loss_figure(log: TrainingLog) -> Figure:
    """The total loss and each component in its own panel: components differ in scale."""
    columns = [c for c in log.loss_columns() if not logged(log.training, c).empty]
    if not columns:
        raise NothingToPlot(f"{log.path.name} has no 'loss' or 'loss_*' keys")
    fig, axes = new_figure(*grid_shape(len(columns)))
    for index, (ax, column) in enumerate(zip(axes.flat, columns, strict=False)):
        color = TOTAL_LOSS_COLOR if column == "loss" else PALETTE[index % len(PALETTE)]
        values = logged(log.training, column)
        plot_smoothed(ax, values["iteration"], values[column], color=color)
        title = "total loss" if column == "loss" else column
        style_axes(ax, title=f"{title} (last {values[column].iloc[-1]:.3g})", xlabel="")
    hide_unused(axes, len(columns))
    fig.supxlabel("iteration")
    fig.suptitle("Training losses (faint: raw, bold: smoothed)")
    return fig


def learning_rate_figure(log: TrainingLog) -> Figure:
    """The schedule as logged, to check warm-up and decay steps happened where configured."""
    values = logged(log.training, "lr")
    if values.empty:
        raise NothingToPlot(f"{log.path.name} has no 'lr' key")
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.plot(values["iteration"], values["lr"], color=PALETTE[0], linewidth=1.8)
    positive = values["lr"][values["lr"] > 0]
    if not positive.empty and positive.max() / positive.min() > LOG_SCALE_RATIO:
        ax.set_yscale("log")
    style_axes(ax, title="Learning rate", xlabel="iteration", ylabel="lr")
    return fig


def throughput_figure(log: TrainingLog) -> Figure:
    """Images/s beside data-loading time (and peak memory when logged).

    Side by side because a throughput dip with a data-time rise points at the input
    pipeline, not the GPU.
    """
    panels = [c for c in THROUGHPUT_PANELS if not logged(log.training, c).empty]
    if "images_per_s" not in panels:
        raise NothingToPlot(f"{log.path.name} has no 'images_per_s' key")
    fig, axes = new_figure(1, len(panels))
    for index, (ax, column) in enumerate(zip(axes.flat, panels, strict=True)):
        values = logged(log.training, column)
        plot_smoothed(ax, values["iteration"], values[column], color=PALETTE[index])
        title, unit, how, template = THROUGHPUT_PANELS[column]
        summary = template.format(values[column].agg(how))
        style_axes(ax, title=f"{title} ({how} {summary})", xlabel="iteration", ylabel=unit)
        ax.set_ylim(bottom=0)
    return fig


def ap_vs_iteration_figure(log: TrainingLog) -> Figure:
    """AP, AP50 and AP75 at each periodic evaluation, one panel per iou type."""
    evals = log.evals[log.evals["stat"].isin(AP_STATS)]
    if evals.empty:
        raise NothingToPlot(
            f"{log.path.name} has no eval lines with {'/'.join(AP_STATS)}: this run had no "
            "periodic evaluation, only the final model was evaluated"
        )
    iou_types = list(dict.fromkeys(evals["iou_type"]))
    fig, axes = new_figure(1, len(iou_types), sharey=True)
    for ax, iou_type in zip(axes.flat, iou_types, strict=True):
        for index, stat in enumerate(AP_STATS):
            rows = evals[(evals["iou_type"] == iou_type) & (evals["stat"] == stat)]
            if not rows.empty:
                ax.plot(
                    rows["iteration"],
                    rows["value"],
                    marker="o",
                    markersize=4,
                    color=PALETTE[index],
                    label=stat,
                )
        style_axes(ax, title=f"{iou_type} AP during training", xlabel="iteration")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    return fig
