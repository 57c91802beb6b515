"""What every report figure shares: creation, styling, smoothing and atomic saving.

Figures are plain :class:`matplotlib.figure.Figure` objects, never pyplot ones: nothing global
keeps them alive (no figure manager to close, no leak when a report draws hundreds), and no GUI
backend is ever chosen, so the report runs the same on a headless node as on a laptop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from maskrcnn_pipeline.fileio import atomic_path

DPI = 110
"""Enough for text to stay sharp when the PNG is viewed at full size, small enough to embed."""

PANEL_SIZE = (4.6, 3.2)
"""Width and height (inches) of one panel; grids scale with their number of panels."""


class NothingToPlot(Exception):
    """Raised by a figure builder whose inputs hold nothing to draw (say, no eval lines).

    It is not an error: the report skips that figure and says why in summary.md, so the
    message must read as a reason ("metrics.jsonl has no eval lines").
    """


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    panel_size: tuple[float, float] = PANEL_SIZE,
    **subplot_kw: object,
) -> tuple[Figure, np.ndarray]:
    """Create a figure sized for ``nrows`` x ``ncols`` panels; axes come back as a 2-D array.

    Constrained layout keeps titles, labels and colour bars from overlapping without the
    per-figure fiddling that ``tight_layout`` needs.
    """
    width, height = panel_size
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def grid_shape(count: int, max_columns: int = 3) -> tuple[int, int]:
    """Rows and columns of the smallest near-square grid, at most ``max_columns`` wide."""
    columns = max(1, min(count, max_columns))
    return math.ceil(count / columns), columns


def hide_unused(axes: np.ndarray, used: int) -> None:
    """Switch off the panels a grid has beyond the ``used`` first ones."""
    for ax in axes.flat[used:]:
        ax.set_axis_off()


def style_axes(ax: Axes, *, title: str, xlabel: str, ylabel: str = "") -> None:
    """Give every panel the same quiet look: a title, labels, a light grid, no top/right box."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)


def smooth(values: pd.Series, fraction: float = 0.02) -> pd.Series:
    """A centred moving average over ``fraction`` of the points (at least one).

    Centred, unlike an exponential average, so the smoothed curve does not lag behind the raw
    one: a drop at a learning-rate step shows at the iteration it happened.
    """
    window = max(1, round(len(values) * fraction))
    return values.rolling(window, center=True, min_periods=1).mean()


def plot_smoothed(
    ax: Axes, x: pd.Series, y: pd.Series, *, color: str, label: str | None = None
) -> None:
    """Draw the raw values faintly and their smoothed trend on top, in the same colour.

    The faint raw line keeps outliers (a loss spike, a slow data loader) visible; the trend is
    what the eye should follow.
    """
    ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
    ax.plot(x, smooth(y), color=color, linewidth=1.8, label=label)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically and free its drawing memory.

    The format is given explicitly because the temporary file's ``.tmp`` suffix would
    otherwise make matplotlib guess it from the name and fail. The PNG carries no date, so the
    same inputs give byte-identical files.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=DPI)
    fig.clear()
    return path
