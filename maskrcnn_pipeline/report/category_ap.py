"""The best and worst categories by AP, per iou type, from ``eval/<split>/per_category.csv``.

Only the extremes are drawn: with COCO's 80 classes a full bar chart is unreadable, and the
question it answers is "which classes does the model get right or wrong".
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from maskrcnn_pipeline.report.figures import NothingToPlot, new_figure, style_axes
from maskrcnn_pipeline.report.tables import read_checked_csv, stats_are_percent

COLUMNS = ("iou_type", "category_id", "category_name", "AP", "AP50", "AP75")
RANK_COLORS = {"best": "#2a9d8f", "worst": "#e76f51", "all": "#457b9d"}
NAME_WIDTH = 22


def read_per_category(path: Path) -> pd.DataFrame:
    """The per-category CSV, without categories COCOeval could not score (AP -1 or empty)."""
    frame = read_checked_csv(path, COLUMNS)
    frame["AP"] = pd.to_numeric(frame["AP"], errors="coerce")
    return frame[frame["AP"] >= 0]


def extremes(frame: pd.DataFrame, count: int) -> pd.DataFrame:
    """The ``count`` best and ``count`` worst rows by AP, best first, with a ``rank`` column.

    With no more than ``2 * count`` rows every category is shown, ranked "all": splitting a
    handful into best and worst halves would paint near-equal APs in opposite colours.
    """
    ordered = frame.sort_values(["AP", "category_name"], ascending=[False, True])
    if len(ordered) <= 2 * count:
        return ordered.assign(rank="all")
    return pd.concat(
        [ordered.head(count).assign(rank="best"), ordered.tail(count).assign(rank="worst")]
    )


def per_category_figure(frame: pd.DataFrame, count: int = 10) -> Figure:
    """One horizontal bar panel per iou type, highest AP on top."""
    if frame.empty:
        raise NothingToPlot("the per-category CSV has no category with an AP")
    iou_types = list(dict.fromkeys(frame["iou_type"]))
    bars = min(2 * count, frame.groupby("iou_type").size().max())
    fig, axes = new_figure(1, len(iou_types), panel_size=(4.8, 1.0 + 0.28 * bars))
    limit = 100.0 if stats_are_percent(frame[["AP"]]) else 1.0
    ranks: set[str] = set()
    for ax, iou_type in zip(axes.flat, iou_types, strict=True):
        shown = extremes(frame[frame["iou_type"] == iou_type], count).iloc[::-1]
        ranks |= set(shown["rank"])
        labels = [str(name)[:NAME_WIDTH] for name in shown["category_name"]]
        container = ax.barh(range(len(shown)), shown["AP"], color=shown["rank"].map(RANK_COLORS))
        ax.bar_label(container, fmt="%.2f" if limit == 1.0 else "%.1f", fontsize=7, padding=2)
        ax.set_yticks(range(len(shown)), labels, fontsize=8)
        ax.set_xlim(0, limit * 1.1)
        title = "AP per category" if set(shown["rank"]) == {"all"} else f"best and worst {count}"
        style_axes(ax, title=f"{iou_type}: {title}", xlabel="AP")
    if ranks - {"all"}:
        legend = [Patch(color=RANK_COLORS[r], label=r) for r in ("best", "worst")]
        fig.legend(handles=legend, loc="outside lower center", ncols=2, fontsize=8)
    return fig
