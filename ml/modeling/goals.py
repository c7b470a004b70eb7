"""The forecast's goals, checked in one run beside the baselines.

Each goal reads the metrics of the `prerelease` evaluation (time split,
backtest, interval coverage) or checks the serving path itself: a forecast
for a year after the data, for every platform of the reference, completed by
`PointInTime.complete` exactly as the API completes it, and the names of the
biggest publishers resolved by `ml.modeling.names.Resolver` exactly as the
API resolves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from ml.modeling import shapes
from ml.modeling.intervals import GOAL_SEGMENT_ROWS
from ml.modeling.names import NameReference, Resolver
from ml.modeling.point_in_time import HORIZON_YEARS, PointInTime

TIME_SPLIT_R2 = 0.55
BACKTEST_R2 = 0.45
# A request of the four required fields: at least the baseline reading
# exactly those fields, and at least this.
NO_TITLE_R2 = 0.30
COVERAGE_RANGE = (0.77, 0.83)
# Every segment of at least GOAL_SEGMENT_ROWS rows covers at least this.
SEGMENT_COVERAGE = 0.70
# How far past the data the serving check forecasts: the last year served.
YEARS_AHEAD = HORIZON_YEARS
BASELINES = ("median", "label_encoded_forest", "categorical_boosting")
# The publishers whose linked names must never be answered as unseen.
TOP_PUBLISHERS = 50


@dataclass(frozen=True)
class Goal:
    """One goal: what is asked, what was measured, the baselines, and whether it is met."""

    goal: str
    target: str
    value: str
    baselines: str
    met: bool


def _baselines(metrics: Mapping[str, float], pattern: str) -> str:
    found = [(name, metrics.get(pattern.format(name))) for name in BASELINES]
    return ", ".join(f"{name} {value:.3f}" for name, value in found if value is not None)


def future_forecast_problems(history: PointInTime) -> tuple[list[str], list[str]]:
    """Zero-filled features and undescribed platforms in forecasts past the data.

    For each reference platform a request for a year YEARS_AHEAD past the
    last complete year is completed. A history count may be 0 only when the
    data holds no such release up to that year; a platform with a launch
    year must get an age.
    """
    zero_filled, undescribed = [], []
    last = history.last_complete_year or 0
    year = last + YEARS_AHEAD
    for platform, attributes in sorted(history.platforms.items()):
        record = history.complete({
            "platform": platform, "genre": "Action", "publisher": "Nintendo",
            "year": year, "name": "Super Mario Bros.", "platforms": [platform],
        })
        if record["publisher_prior_titles"] == 0 and history.has_releases("publisher", "Nintendo"):
            zero_filled.append(f"{platform}: publisher_prior_titles")
        if record["platform_titles_prior_year"] is None:
            zero_filled.append(f"{platform}: platform_titles_prior_year missing")
        if attributes.get("launch_year") is not None and record["platform_age_years"] is None:
            undescribed.append(platform)
    return zero_filled, undescribed


def check(metrics: Mapping[str, float], history: PointInTime) -> list[Goal]:
    """Every goal of the forecast, measured."""
    return [*_backtest_goals(metrics), *_shape_goals(metrics), *_serving_goals(history)]


def _shape_goals(metrics: Mapping[str, float]) -> list[Goal]:
    """The request shapes' goals (none for a run scored without shapes)."""
    nan = float("nan")
    if f"backtest_shape_{shapes.NO_TITLE}_r2_mean" not in metrics:
        return []
    no_title = metrics[f"backtest_shape_{shapes.NO_TITLE}_r2_mean"]
    bar = metrics.get(f"baseline_{shapes.BASELINE}_backtest_shape_{shapes.NO_TITLE}_r2_mean", nan)
    per_shape = {s: metrics.get(f"interval_coverage_shape_{s}", nan) for s in shapes.SHAPES}
    low, high = COVERAGE_RANGE
    scores = ", ".join(f"{s} {metrics.get(f'backtest_shape_{s}_r2_mean', nan):.3f}"
                       for s in shapes.SHAPES)
    return [
        Goal("backtest mean log1p R², no title (the four required fields)",
             f"≥ the {shapes.BASELINE} baseline and ≥ {NO_TITLE_R2}", f"{no_title:.3f}",
             f"{shapes.BASELINE} {bar:.3f}", no_title >= bar and no_title >= NO_TITLE_R2),
        Goal("80% interval coverage of every request shape", f"{low:.0%}-{high:.0%}",
             ", ".join(f"{s} {v:.1%}" for s, v in per_shape.items()), "",
             all(low <= v <= high for v in per_shape.values())),
        Goal("backtest R², weighted mean over request shapes (the gate's metric)",
             "reported", f"{metrics.get('backtest_r2_shapes_mean', nan):.3f} ({scores})", "",
             True),
    ]


def _backtest_goals(metrics: Mapping[str, float]) -> list[Goal]:
    time_r2 = metrics.get("time_test_r2", float("nan"))
    backtest_r2 = metrics.get("backtest_r2_mean", float("nan"))
    coverage = metrics.get("interval_coverage", float("nan"))
    worst = metrics.get("interval_coverage_min_segment", float("nan"))
    low, high = COVERAGE_RANGE
    return [
        Goal("time split log1p R² (train < 2012, test ≥ 2012)", f"≥ {TIME_SPLIT_R2}",
             f"{time_r2:.3f}", _baselines(metrics, "baseline_{}_time_test_r2"),
             time_r2 >= TIME_SPLIT_R2),
        Goal("backtest mean log1p R², full request, horizons 1-3", f"≥ {BACKTEST_R2}",
             f"{backtest_r2:.3f} (h1 {metrics.get('backtest_r2_h1', float('nan')):.3f}, "
             f"h2 {metrics.get('backtest_r2_h2', float('nan')):.3f}, "
             f"h3 {metrics.get('backtest_r2_h3', float('nan')):.3f})",
             _baselines(metrics, "baseline_{}_backtest_r2_mean"),
             backtest_r2 >= BACKTEST_R2),
        Goal("80% interval coverage on the backtest", f"{low:.0%}-{high:.0%}",
             f"{coverage:.1%}", "", low <= coverage <= high),
        Goal(f"coverage in every segment of ≥ {GOAL_SEGMENT_ROWS} rows", f"≥ {SEGMENT_COVERAGE:.0%}",
             f"worst {worst:.1%}", "", worst >= SEGMENT_COVERAGE),
    ]


def _serving_goals(history: PointInTime) -> list[Goal]:
    zero_filled, undescribed = future_forecast_problems(history)
    return [
        Goal(f"no zero-filled count in forecasts {YEARS_AHEAD} years past the data",
             "none", ", ".join(zero_filled) or "none", "", not zero_filled),
        Goal("no ref_platforms platform left undescribed (unseen)", "none",
             ", ".join(undescribed) or f"none of {len(history.platforms)}", "",
             not undescribed),
    ]


def top_publishers(frame: pd.DataFrame, n: int = TOP_PUBLISHERS) -> list[str]:
    """The `n` publishers of the mart with the most global sales (the
    unknown publisher left out), biggest first."""
    known = frame[frame["publisher"].astype(str) != "Unknown"]
    sales = known.groupby(known["publisher"].astype(str))["global_sales"].sum()
    return sales.sort_values(ascending=False, kind="stable").head(n).index.tolist()


def lineage_goal(
    known: Mapping[str, frozenset[str]], frame: pd.DataFrame, names: NameReference
) -> Goal:
    """Every name linked to a top publisher (a rename, a label, a
    subsidiary...) sent as the API receives it: none may be answered as
    unseen. `known` is the served model's categories (`known_categories`)."""
    top = top_publishers(frame)
    resolver = Resolver(known, names)
    linked = [link for link in names.links("publisher") if link.canonical in top]
    seen = known.get("publisher", frozenset())
    unseen = sorted(
        link.written for link in linked
        if resolver.correct({"publisher": link.written})[0]["publisher"] not in seen
    )
    covered = len({link.canonical for link in linked})
    value = (f"{len(unseen)} of {len(linked)} names linked to {covered} of the top {len(top)}"
             + (f": {', '.join(unseen)}" if unseen else ""))
    return Goal(f"linked names (renames, labels...) of the top {TOP_PUBLISHERS} publishers "
                "answered as unseen", "0", value, "", not unseen)


def shapes_frame(table: Mapping[str, Mapping[str, object]]) -> pd.DataFrame:
    """`shapes.scores` as a table, one row per shape."""
    return pd.DataFrame([
        {"shape": shape, "request": row["request"], "R²": row["r2"], "MAE": row["mae"],
         "interval coverage": row["interval_coverage"], f"{shapes.BASELINE} R²": row["baseline_r2"]}
        for shape, row in table.items()
    ])


def shapes_markdown(metrics: Mapping[str, float]) -> str:
    """The backtest by request shape beside the four-field baseline, or "" without shapes."""
    table = shapes.scores(metrics)
    if table is None:
        return ""

    def cell(value: object, form: str) -> str:
        return "-" if value is None else format(value, form)

    lines = [f"| shape | request | R² | MAE | interval coverage | {shapes.BASELINE} R² |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [
        f"| {shape} | {row['request']} | {cell(row['r2'], '.3f')} | {cell(row['mae'], '.3f')} "
        f"| {cell(row['interval_coverage'], '.1%')} | {cell(row['baseline_r2'], '.3f')} |"
        for shape, row in table.items()
    ]
    return "\n".join(lines)


def to_markdown(goals: list[Goal]) -> str:
    lines = ["| goal | target | measured | baselines | met |", "|---|---|---|---|---|"]
    lines += [
        f"| {g.goal} | {g.target} | {g.value} | {g.baselines or '-'} | "
        f"{'yes' if g.met else '**no**'} |"
        for g in goals
    ]
    return "\n".join(lines)
