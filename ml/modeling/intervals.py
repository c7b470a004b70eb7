"""80% prediction intervals, calibrated by conformal prediction on backtest residuals.

The residuals come from `ml.modeling.backtest`: each is the error of a model
fitted before its origin on a release it had never seen, with features known
before the origin, which is how the served model is used. Split conformal
prediction turns them into an interval: the forecast on the log1p scale plus
the empirical (1 - level)/2 and (1 + level)/2 quantiles of the signed
residuals, with the finite-sample correction, mapped back to millions.

Errors are not alike across releases (a shooter's sales spread wider than a
puzzle game's; a platform the model never saw is harder; a request without
a title knows less), so the quantiles are Mondrian: one pair per bin of
request shape (`ml.modeling.shapes`), genre and whether the platform had
releases in the training data. A bin with fewer than MIN_BIN_ROWS residuals
uses its shape's pooled quantiles, or all residuals' for a shape without
enough.

MAPIE and crepes were considered: both calibrate one fitted estimator on a
calibration set, while these residuals come from six refits (one per origin)
and are already in hand; crepes' Mondrian regressor is this computation, so a
dependency would add nothing but an install. `coverage` measures the result
honestly, leaving each origin out of its own calibration.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.modeling.shapes import FULL

LEVEL = 0.8
# The registered version's tag holding `Calibration.to_json()`, read by the API.
INTERVAL_CALIBRATION_TAG = "interval_calibration"
MIN_BIN_ROWS = 100
# Segments at least this large must reach the coverage goal on their own.
GOAL_SEGMENT_ROWS = 100
COVERAGE_COLUMNS = ("segment", "value", "n", "coverage", "median_width")


def bin_key(genre: object, platform_seen: bool, shape: str = FULL) -> str:
    """The Mondrian bin of a forecast: its request shape, genre and whether
    the platform is known."""
    return f"{shape}|{genre}|{'seen' if platform_seen else 'unseen'}"


def _shapes_of(residuals: pd.DataFrame) -> np.ndarray:
    """Each residual's request shape (full for residuals scored without shapes)."""
    if "shape" in residuals.columns:
        return residuals["shape"].astype(str).to_numpy()
    return np.full(len(residuals), FULL)


def _quantiles(errors: np.ndarray, level: float) -> tuple[float, float]:
    """Conformal lower and upper offsets: order statistics with the (n + 1) correction."""
    ordered = np.sort(errors)
    n = len(ordered)
    tail = (1 - level) / 2
    low = max(math.floor((n + 1) * tail), 1)
    high = min(math.ceil((n + 1) * (1 - tail)), n)
    return float(ordered[low - 1]), float(ordered[high - 1])


@dataclass(frozen=True)
class Calibration:
    """Offsets (log1p scale) to add to a forecast for its interval, per bin."""

    level: float
    pooled: tuple[float, float]
    bins: dict[str, tuple[float, float]] = field(default_factory=dict)
    shapes: dict[str, tuple[float, float]] = field(default_factory=dict)

    def offsets(self, genre: object, platform_seen: bool, shape: str = FULL) -> tuple[float, float]:
        fallback = self.shapes.get(shape, self.pooled)
        return self.bins.get(bin_key(genre, platform_seen, shape), fallback)

    def interval(
        self, log_forecast: float, genre: object, platform_seen: bool, shape: str = FULL
    ) -> dict[str, float]:
        """`{level, lower, upper}` in millions of units (never below 0)."""
        low, high = self.offsets(genre, platform_seen, shape)
        return {
            "level": self.level,
            "lower": max(float(np.expm1(log_forecast + low)), 0.0),
            "upper": max(float(np.expm1(log_forecast + high)), 0.0),
        }

    def to_json(self) -> str:
        return json.dumps(
            {"level": self.level, "pooled": self.pooled, "bins": self.bins,
             "shapes": self.shapes},
            sort_keys=True, separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """A stored calibration; one from before shapes (bins `genre|seen`)
        had full requests only."""
        data = json.loads(text)
        return cls(
            level=float(data["level"]),
            pooled=tuple(data["pooled"]),
            bins={(k if k.count("|") == 2 else f"{FULL}|{k}"): tuple(v)
                  for k, v in data["bins"].items()},
            shapes={k: tuple(v) for k, v in data.get("shapes", {}).items()},
        )


def calibrate(residuals: pd.DataFrame, level: float = LEVEL) -> Calibration:
    """Mondrian conformal offsets from backtest residuals (`actual`, `predicted`,
    `genre`, `platform_seen`)."""
    if residuals.empty:
        raise ValueError("no backtest residuals to calibrate intervals on")
    errors = (residuals["actual"] - residuals["predicted"]).to_numpy(dtype="float64")
    kinds = _shapes_of(residuals)
    keys = np.asarray([bin_key(g, s, k) for g, s, k
                       in zip(residuals["genre"], residuals["platform_seen"], kinds)])

    def pooled(labels: np.ndarray) -> dict[str, tuple[float, float]]:
        return {
            key: _quantiles(errors[labels == key], level)
            for key, n in pd.Series(labels).value_counts().items()
            if n >= MIN_BIN_ROWS
        }

    return Calibration(level=level, pooled=_quantiles(errors, level),
                       bins=dict(sorted(pooled(keys).items())),
                       shapes=dict(sorted(pooled(kinds).items())))


def _bounds(calibration: Calibration, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.array([calibration.offsets(g, s, k) for g, s, k
                        in zip(rows["genre"], rows["platform_seen"], _shapes_of(rows))])
    predicted = rows["predicted"].to_numpy(dtype="float64")
    return predicted + offsets[:, 0], predicted + offsets[:, 1]


def coverage(residuals: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Share of backtest releases inside their interval, overall and per segment.

    Each origin's releases get intervals calibrated on the other origins'
    residuals only, so a release never calibrates its own interval. Widths
    are in millions of units.
    """
    covered = pd.Series(False, index=residuals.index)
    width = pd.Series(np.nan, index=residuals.index)
    for origin, rows in residuals.groupby("origin"):
        others = residuals[residuals["origin"] != origin]
        calibration = calibrate(others if len(others) else rows, level)
        low, high = _bounds(calibration, rows)
        actual = rows["actual"].to_numpy(dtype="float64")
        covered[rows.index] = (actual >= low) & (actual <= high)
        width[rows.index] = np.expm1(high) - np.clip(np.expm1(low), 0, None)
    frame = residuals.assign(
        covered=covered, width=width,
        platform=np.where(residuals["platform_seen"], "seen", "unseen"),
        publisher=np.where(residuals["publisher_seen"], "seen", "unseen"),
        shape=_shapes_of(residuals),
        overall="all",
    )
    rows = []
    for segment in ("overall", "shape", "horizon", "platform", "publisher", "genre"):
        for value, group in frame.groupby(segment, sort=True):
            rows.append({
                "segment": segment, "value": str(value), "n": len(group),
                "coverage": float(group["covered"].mean()),
                "median_width": float(group["width"].median()),
            })
    return pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))


def worst_segment(coverage_table: pd.DataFrame) -> pd.Series:
    """The least covered segment of at least GOAL_SEGMENT_ROWS rows."""
    large = coverage_table[coverage_table["n"] >= GOAL_SEGMENT_ROWS]
    return large.loc[large["coverage"].idxmin()]
