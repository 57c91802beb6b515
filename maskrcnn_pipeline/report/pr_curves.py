"""Precision-recall curves per iou type from ``eval/<split>/pr_curves.csv`` (long format)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from maskrcnn_pipeline.report.figures import NothingToPlot, new_figure, style_axes
from maskrcnn_pipeline.report.tables import read_checked_csv

COLUMNS = ("iou_type", "iou_threshold", "recall", "precision")
THRESHOLD_STYLES = (("#1f77b4", "-"), ("#d62728", "--"), ("#2ca02c", "-."), ("#9467bd", ":"))
"""Colour and dash per IoU threshold: dashes keep coinciding curves (both at 1.0) visible."""


def read_pr_curves(path: Path) -> pd.DataFrame:
    """The curves CSV; COCOeval marks unreachable recall levels with precision -1, dropped."""
    frame = read_checked_csv(path, COLUMNS)
    for column in ("iou_threshold", "recall", "precision"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame[frame["precision"] >= 0]


def pr_curves_figure(frame: pd.DataFrame) -> Figure:
    """One panel per iou type, one curve per IoU threshold (0.5 and 0.75 by default)."""
    if frame.empty:
        raise NothingToPlot("the PR-curves CSV has no points")
    iou_types = list(dict.fromkeys(frame["iou_type"]))
    fig, axes = new_figure(1, len(iou_types), panel_size=(4.2, 3.8), sharey=True)
    for ax, iou_type in zip(axes.flat, iou_types, strict=True):
        rows = frame[frame["iou_type"] == iou_type]
        for index, (threshold, curve) in enumerate(rows.groupby("iou_threshold", sort=True)):
            curve = curve.sort_values("recall")
            color, dashes = THRESHOLD_STYLES[index % len(THRESHOLD_STYLES)]
            ax.plot(
                curve["recall"],
                curve["precision"],
                linewidth=1.8,
                color=color,
                linestyle=dashes,
                label=f"IoU = {threshold:.2f}",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        style_axes(ax, title=f"{iou_type} precision-recall", xlabel="recall", ylabel="precision")
        ax.legend(fontsize=8, loc="lower left")
    return fig
