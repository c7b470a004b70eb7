"""Request shapes: what a caller of `/v1/forecast` leaves out, one definition.

A request always carries platform, genre, publisher and year; the title
(`name`, which gives the series history) and the `platforms` list (which
gives `title_platform_count`) are optional, and the publisher may be one the
data never saw. Each shape says which features a request of that kind cannot
have, so that:

- the backtest scores every shape on the same rows (`shaped`),
- serving tells which shape a completed request is (`shape_of`), for its
  interval and the score `GET /model` reports for it.

A request without a title is answered by a model fitted without the title
features (`ml.modeling.pipelines.ByRequestShape`), so "not given" is never
read as "a title with no history". An unseen publisher is represented as a
missing one (None): the pipeline encodes both as NaN.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

import pandas as pd

from ml.modeling.pipelines import TITLE_FEATURES

FULL, NO_PLATFORMS, NO_TITLE, NO_TITLE_UNSEEN_PUBLISHER = (
    "full", "no_platforms", "no_title", "no_title_unseen_publisher",
)
SHAPES = (FULL, NO_PLATFORMS, NO_TITLE, NO_TITLE_UNSEEN_PUBLISHER)
DESCRIPTIONS = {
    FULL: "title and platforms list with the four required fields",
    NO_PLATFORMS: "title, no platforms list",
    NO_TITLE: "the four required fields only (platform, genre, publisher, year)",
    NO_TITLE_UNSEEN_PUBLISHER: "the four required fields, a publisher the data never saw",
}
# The baseline every shape is shown beside: HistGB on the four required
# fields (`ml.modeling.baselines`).
BASELINE = "categorical_boosting"
# The champion gate's weights: equal, so that no shape can be traded for
# another (how often callers send each shape is not known).
WEIGHTS = {shape: 1 / len(SHAPES) for shape in SHAPES}

_PUBLISHER_HISTORY = ("publisher_prior_titles", "publisher_prior_mean_log_sales")
# Features each shape cannot have (set missing).
MISSING = {
    FULL: (),
    NO_PLATFORMS: ("title_platform_count",),
    NO_TITLE: TITLE_FEATURES,
    NO_TITLE_UNSEEN_PUBLISHER: (*TITLE_FEATURES, "publisher", *_PUBLISHER_HISTORY),
}


def shaped(rows: pd.DataFrame, shape: str) -> pd.DataFrame:
    """`rows` as a request of `shape` would give them: its missing features
    set missing, an unseen publisher's history as the API computes it (no
    titles, no mean)."""
    out = rows.copy()
    for column in MISSING[shape]:
        if column in out.columns:
            out[column] = 0 if column == "publisher_prior_titles" else None
    return out


def scores(metrics: Mapping[str, float]) -> dict[str, dict[str, object]] | None:
    """Per shape, what a run's metrics say about it (what the request
    carries, backtest R² and MAE, interval coverage, the baseline's R² on the
    same rows); None for a run scored without shapes."""
    if f"backtest_shape_{FULL}_r2_mean" not in metrics:
        return None
    return {
        shape: {
            "request": DESCRIPTIONS[shape],
            "r2": metrics.get(f"backtest_shape_{shape}_r2_mean"),
            "mae": metrics.get(f"backtest_shape_{shape}_mae_mean"),
            "interval_coverage": metrics.get(f"interval_coverage_shape_{shape}"),
            "baseline_r2": metrics.get(f"baseline_{BASELINE}_backtest_shape_{shape}_r2_mean"),
        }
        for shape in SHAPES
    }


def shape_of(record: Mapping[str, object], known_publishers: Container[str]) -> str:
    """The shape of a completed request (`PointInTime.complete`'s output).

    A titled request with an unseen publisher is scored as full: its series
    history is what the model leans on.
    """
    titled = record.get("series_prior_titles") is not None
    if not titled:
        if record.get("publisher") not in known_publishers:
            return NO_TITLE_UNSEEN_PUBLISHER
        return NO_TITLE
    return FULL if record.get("title_platform_count") is not None else NO_PLATFORMS
