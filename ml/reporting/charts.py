"""The report's charts: release-level frames in, matplotlib Figures out.

Like `ml.modeling.plots`, figures are built on `Figure` with the Agg canvas rather than
through pyplot: no GUI backend, no global figure registry holding memory in a
long-running flow worker. `png_base64` turns a figure into the text an
`<img src="data:...">` embeds, which keeps the report one offline file.

Sales are heavily right-skewed (a handful of titles sell tens of millions,
the median sells a few hundred thousand), so histograms and box plots use
logarithmic sales axes.
"""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

REGIONS = ["na_sales", "eu_sales", "jp_sales", "other_sales"]
REGION_LABELS = {
    "na_sales": "North America",
    "eu_sales": "Europe",
    "jp_sales": "Japan",
    "other_sales": "Other",
    "global_sales": "Global",
}
BAR_COLOR = "#4c72b0"
ACCENT_COLOR = "#dd8452"
# Smallest sales figure the data can hold (two decimals, millions): the lower
# edge of every log axis.
SALES_RESOLUTION = 0.01
DPI = 90
# Metrics where a larger value is a better model (the rest are errors).
HIGHER_IS_BETTER = ("r2", "explained_variance")


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_base64(figure: Figure) -> str:
    """The figure as a base64 PNG, ready for a data: URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _log_bins(values: pd.Series, count: int = 40) -> np.ndarray:
    """Log-spaced bin edges snapped to the data's 0.01 steps.

    Sales are recorded to two decimals, so plain log bins narrower than 0.01
    at the low end would alternate between empty and full; snapping the
    edges to half-steps gives each small value its own bin instead.
    """
    top = max(float(values.max()), SALES_RESOLUTION * 10)
    edges = np.logspace(np.log10(SALES_RESOLUTION / 2), np.log10(top * 1.01), count)
    half = SALES_RESOLUTION / 2
    snapped = np.round((edges - half) / SALES_RESOLUTION) * SALES_RESOLUTION + half
    return np.unique(np.round(snapped, 6))


def releases_and_sales_bars(releases: pd.DataFrame, by: str, top: int | None = None) -> Figure:
    """Release count and global sales per value of `by`, largest first.

    With `top`, only the `top` values by sales are drawn (for publishers).
    """
    grouped = releases.groupby(by, observed=True).agg(
        releases=("release_id", "size"), sales=("global_sales", "sum")
    )
    if top:
        grouped = grouped.nlargest(top, "sales")
    height = 1.5 + 0.22 * len(grouped)
    figure = new_figure(11, max(height, 3.5))
    panels = (("releases", "releases"), ("sales", "global sales, millions"))
    for index, (column, label) in enumerate(panels, start=1):
        ordered = grouped[column].sort_values()
        axes = figure.add_subplot(1, 2, index)
        axes.barh(ordered.index.astype(str), ordered.to_numpy(), color=BAR_COLOR)
        axes.set_xlabel(label)
        axes.tick_params(axis="y", labelsize=8)
    return figure


def global_sales_histogram(releases: pd.DataFrame) -> Figure:
    """Global sales per release on a log axis."""
    values = releases["global_sales"]
    figure = new_figure(8, 3.8)
    axes = figure.add_subplot()
    axes.hist(values[values > 0], bins=_log_bins(values), color=BAR_COLOR)
    axes.set_xscale("log")
    axes.set_xlabel("global sales per release, millions (log scale)")
    axes.set_ylabel("releases")
    axes.axvline(values.median(), color=ACCENT_COLOR, label=f"median {values.median():.2f}")
    axes.legend()
    return figure


def regional_sales_histograms(releases: pd.DataFrame) -> Figure:
    """One log-axis histogram per region; zero sales cannot sit on a log axis
    and are counted in each panel's title instead."""
    figure = new_figure(11, 6)
    for index, region in enumerate(REGIONS, start=1):
        values = releases[region]
        axes = figure.add_subplot(2, 2, index)
        axes.hist(values[values > 0], bins=_log_bins(values), color=BAR_COLOR)
        axes.set_xscale("log")
        zeros = int((values <= 0).sum())
        axes.set_title(f"{REGION_LABELS[region]} ({zeros} releases at 0 not shown)", fontsize=10)
        axes.set_xlabel("sales per release, millions (log scale)")
    return figure


def sales_box_plot(releases: pd.DataFrame, by: str) -> Figure:
    """Global sales per release by `by`, ordered by median, on a log axis."""
    positive = releases[releases["global_sales"] > 0]
    groups = {
        str(name): group["global_sales"].to_numpy()
        for name, group in positive.groupby(by, observed=True)
    }
    order = sorted(groups, key=lambda name: np.median(groups[name]))
    figure = new_figure(max(8, 0.38 * len(order) + 2), 4.5)
    axes = figure.add_subplot()
    axes.boxplot([groups[name] for name in order], tick_labels=order, flierprops={"markersize": 2})
    axes.set_yscale("log")
    axes.set_ylabel("global sales per release, millions (log scale)")
    axes.tick_params(axis="x", rotation=60, labelsize=8)
    return figure


def heatmap(table: pd.DataFrame, label: str, fmt: str = "{:.2f}", cmap: str = "viridis") -> Figure:
    """Any numeric table as an annotated heatmap (rows down, columns across)."""
    figure = new_figure(max(5, 0.75 * table.shape[1] + 3), max(3.5, 0.38 * table.shape[0] + 1.5))
    axes = figure.add_subplot()
    image = axes.imshow(table.to_numpy(dtype=float), cmap=cmap, aspect="auto")
    axes.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right")
    axes.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    for (row, column), value in np.ndenumerate(table.to_numpy(dtype=float)):
        if not np.isnan(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            # Dark text on light cells and the reverse, by perceived luminance.
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            axes.text(column, row, fmt.format(value), ha="center", va="center", fontsize=7,
                      color="black" if light else "white")
    figure.colorbar(image, ax=axes, label=label)
    return figure


def trend_lines(table: pd.DataFrame, ylabel: str, xlabel: str) -> Figure:
    """One line per column of `table`, its index on the x axis."""
    figure = new_figure(10, 4.2)
    axes = figure.add_subplot()
    colors = matplotlib.colormaps["tab10"].colors
    for index, column in enumerate(table.columns):
        axes.plot(table.index, table[column], marker="o" if len(table) < 12 else None,
                  markersize=4, label=str(column), color=colors[index % len(colors)])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if len(table.columns) > 1:
        axes.legend(fontsize=8, ncol=2 if len(table.columns) > 6 else 1)
    axes.grid(alpha=0.3)
    return figure


def small_multiples(table: pd.DataFrame, ylabel: str, xlabel: str, columns: int = 4) -> Figure:
    """One small panel per column of `table` (shared axes), for many series
    that would tangle as lines on one plot."""
    rows = -(-len(table.columns) // columns)
    figure = new_figure(11, 1.9 * rows + 0.6)
    axes_grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    for axes, column in zip(axes_grid.flat, table.columns):
        axes.plot(table.index, table[column], color=BAR_COLOR)
        axes.set_title(str(column), fontsize=9)
        axes.grid(alpha=0.3)
    for axes in axes_grid.flat[len(table.columns):]:
        axes.set_visible(False)
    figure.supxlabel(xlabel)
    figure.supylabel(ylabel)
    return figure


def releases_and_sales_over(releases: pd.DataFrame, by: str) -> Figure:
    """Releases (left) and global sales (right) per `by` (year or decade)."""
    known = releases.dropna(subset=[by])
    grouped = known.groupby(by).agg(
        releases=("release_id", "size"), sales=("global_sales", "sum")
    ).sort_index()
    figure = new_figure(11, 3.8)
    for index, (column, label) in enumerate(
        (("releases", "releases"), ("sales", "global sales, millions")), start=1
    ):
        axes = figure.add_subplot(1, 2, index)
        axes.plot(grouped.index.astype(int), grouped[column], marker="o", markersize=3,
                  color=BAR_COLOR)
        axes.set_xlabel(by)
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    return figure


def metrics_against_baselines(table: pd.DataFrame, metric: str) -> Figure:
    """One bar per candidate (model and baselines) for one held-out metric."""
    figure = new_figure(7, 0.5 * len(table) + 1.5)
    axes = figure.add_subplot()
    colors = [ACCENT_COLOR if name == "model" else BAR_COLOR for name in table["candidate"]]
    axes.barh(table["candidate"], table[metric], color=colors)
    better = "higher" if metric in HIGHER_IS_BETTER else "lower"
    axes.set_xlabel(f"{metric} ({better} is better)")
    axes.invert_yaxis()
    return figure


def residual_plots(actual: np.ndarray, predicted: np.ndarray, scale: str) -> Figure:
    """Predicted against actual (left) and the residual distribution (right)."""
    residuals = predicted - actual
    figure = new_figure(11, 4)
    left = figure.add_subplot(1, 2, 1)
    left.scatter(actual, predicted, s=4, alpha=0.35, color=BAR_COLOR)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    left.plot([low, high], [low, high], color=ACCENT_COLOR, linewidth=1, label="perfect")
    left.set_xlabel(f"actual ({scale})")
    left.set_ylabel(f"predicted ({scale})")
    left.legend()
    right = figure.add_subplot(1, 2, 2)
    right.hist(residuals, bins=60, color=BAR_COLOR)
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel(f"predicted - actual ({scale})")
    right.set_ylabel("test releases")
    return figure
