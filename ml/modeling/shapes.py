"""Request shapes: what a caller of `/v1/forecast` leaves out, one definition.

A request always carries platform, genre, publisher and year; the title
(`name`, which gives the series history) and the `platforms` list (which
gives `title_platform_count`) are optional, and the publisher may be one the
data never saw. Each shape says which features a request of that kind cannot
have, so that:

- the backtest scores every shape on the same rows (`shaped`),
- training shows the model a share of rows as each shape (`masked`), so a
  missing title is learnt as "not given" rather than read as "a title with
  no history" (the booster learns where missing values go only from
  missing values it saw),
- serving tells which shape a completed request is (`shape_of`), for its
  interval and the score `GET /model` reports for it.

An unseen publisher is represented as a missing one (None): the pipeline
encodes both as NaN, so masked training rows teach the model what serving
meets.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

import numpy as np
import pandas as pd

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

_TITLE = ("series_prior_titles", "series_prior_mean_log_sales")
_PLATFORMS = ("title_platform_count",)
_PUBLISHER_HISTORY = ("publisher_prior_titles", "publisher_prior_mean_log_sales")
# Features each shape cannot have (set missing).
MISSING = {
    FULL: (),
    NO_PLATFORMS: _PLATFORMS,
    NO_TITLE: (*_TITLE, *_PLATFORMS),
    NO_TITLE_UNSEEN_PUBLISHER: (*_TITLE, *_PLATFORMS, "publisher", *_PUBLISHER_HISTORY),
}
# Share of training rows shown as each shape other than full. Measured on
# the real file's backtest (docs/forecast.md): enough rows of each shape for
# the trees to learn its missing-value branches, most rows left whole.
MASK_SHARE = 0.15


def shaped(rows: pd.DataFrame, shape: str) -> pd.DataFrame:
    """`rows` as a request of `shape` would give them: its missing features
    set missing, an unseen publisher's history as the API computes it (no
    titles, no mean)."""
    out = rows.copy()
    _mask(out, np.ones(len(out), dtype=bool), shape)
    return out


def _mask(frame: pd.DataFrame, selected: np.ndarray, shape: str) -> None:
    for column in MISSING[shape]:
        if column not in frame.columns:
            continue
        if column == "publisher_prior_titles":
            frame.loc[selected, column] = 0
        else:
            frame.loc[selected, column] = None


def _draw(rows: pd.DataFrame, seed: int) -> np.ndarray:
    """A uniform number per row from its release id and the seed, so a row
    keeps its shape however the rows are ordered (a fit does not depend on
    row order)."""
    ids = rows["release_id"].astype(str).reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(ids, index=False, hash_key=f"{seed:016d}")
    return hashed.to_numpy("uint64") / float(2**64)


def masked(rows: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Training rows with `share` of them shown as each shape but full
    (disjoint subsets drawn by release id; the same for the same seed)."""
    if share <= 0:
        return rows
    partial = SHAPES[1:]
    if share * len(partial) >= 1:
        raise ValueError(f"mask share {share} leaves no full rows for {len(partial)} shapes")
    draw = _draw(rows, seed)
    out = rows.reset_index(drop=True).copy()
    for i, shape in enumerate(partial):
        _mask(out, (draw >= i * share) & (draw < (i + 1) * share), shape)
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
