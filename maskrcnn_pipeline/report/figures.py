"""What every report figure shares: creation, styling, smoothing and atomic saving.

Figures are plain :class:`matplotlib.figure.Figure` objects, never pyplot ones: nothing global
keeps them alive (no figure manager to close, no leak when a report draws hundreds), and no GUI
backend is ever chosen, so the report runs the same on a headless node as on a laptop.
"""

from __future__ import annotations

import argparse
import logging
import math
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from maskrcnn_pipeline.fileio import atomic_path

logger = logging.getLogger(__name__)

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


def placeholder_figure(title: str, reason: str) -> Figure:
    """A panel that says, in words, why a figure has nothing to show.

    Written in place of a figure the workflow declares as an output (Snakemake needs the file,
    and the HTML report shows it): a reader sees the reason where the plot would be instead of
    a missing file or an empty frame.
    """
    fig, axes = new_figure(panel_size=(6.0, 3.0))
    ax = axes[0, 0]
    ax.set_axis_off()
    ax.text(0.5, 0.72, title, ha="center", va="center", fontsize=12, weight="bold")
    ax.text(
        0.5,
        0.38,
        textwrap.fill(f"Nothing to show: {reason}.", width=70),
        ha="center",
        va="center",
        fontsize=9,
        color="#555555",
    )
    return fig


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a report: its file name, its title, and how to draw it."""

    name: str
    title: str
    build: Callable[[], Figure]


@dataclass(frozen=True)
class DrawnFigures:
    """What :func:`draw_all` did: files written, figures shown, and (name, reason) skipped."""

    written: list[Path]
    shown: list[FigureSpec]
    skipped: list[tuple[str, str]]


def add_placeholders_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--placeholders`` for every script that draws figures through :func:`draw_all`."""
    parser.add_argument(
        "--placeholders",
        action="store_true",
        help="write a figure with nothing to show as a panel giving the reason, instead of "
        "leaving it out (the workflow declares every figure as an output)",
    )


def draw_all(specs: Iterable[FigureSpec], out_dir: Path, *, placeholders: bool) -> DrawnFigures:
    """Draw and save each figure, or record why it was skipped.

    A skipped figure becomes a placeholder that states the reason when ``placeholders`` is
    set (the workflow declares every figure as an output); otherwise a file of that name left
    by an earlier report is removed, so the folder always matches its summary.
    """
    drawn = DrawnFigures([], [], [])
    for spec in specs:
        target = out_dir / spec.name
        try:
            figure = spec.build()
        except NothingToPlot as reason:
            logger.warning("skipping %s: %s", spec.name, reason)
            drawn.skipped.append((spec.name, str(reason)))
            if placeholders:
                placeholder = placeholder_figure(spec.title, str(reason))
                drawn.written.append(save_figure(placeholder, target))
            else:
                target.unlink(missing_ok=True)
            continue
        drawn.written.append(save_figure(figure, target))
        drawn.shown.append(spec)
        logger.info("wrote %s", target)
    return drawn
