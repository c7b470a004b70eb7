"""Rolling-origin backtest and conformal intervals on mart-shaped frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import features
from ml.modeling import backtest, intervals, shapes
from ml.modeling.point_in_time import LOOKED_UP, PointInTime, platforms_of, with_history
from tests.mart_sample import mart_frame

SPEC = features.spec("prerelease")
ORIGIN = 2011


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    frame = mart_frame(1500, seed=1)
    # Series shared across years, so series history is not empty.
    frame["series_key"] = [f"series {i % 40}" for i in range(len(frame))]
    return frame


def _perturb_from(frame: pd.DataFrame, origin: int, seed: int = 0) -> pd.DataFrame:
    """`frame` with everything of year `origin` or later changed except the
    test rows' own request fields: new labels, and extra releases of the same
    publishers, series and platforms."""
    rng = np.random.default_rng(seed)
    later = frame["year"].notna() & (frame["year"] >= origin)
    changed = frame.copy()
    changed.loc[later, "log_global_sales"] = rng.uniform(0, 3, later.sum())
    changed.loc[later, "global_sales"] = np.expm1(changed.loc[later, "log_global_sales"])
    extra = frame[later].copy()
    extra["release_id"] = extra["release_id"] + "x"
    extra["log_global_sales"] = rng.uniform(0, 3, len(extra))
    return pd.concat([changed, extra], ignore_index=True).astype(frame.dtypes.to_dict())


def test_no_test_row_feature_uses_data_from_the_origin_or_later(mart):
    """Changing every release of the origin year or later leaves the test
    rows' features exactly as they were; the same change does move the
    features of a history read as of each row's own year (a leak)."""
    platforms = platforms_of(mart)
    _, test = backtest.origin_split(SPEC, mart, platforms, ORIGIN)
    perturbed = _perturb_from(mart, ORIGIN)
    _, test_after = backtest.origin_split(SPEC, perturbed, platforms, ORIGIN)
    after = test_after.set_index("release_id").loc[test["release_id"]].reset_index()
    assert len(test) > 100 and set(test["horizon"]) == set(backtest.HORIZONS)
    pd.testing.assert_frame_equal(
        test[list(LOOKED_UP)], after[list(LOOKED_UP)], check_dtype=False
    )
    # A history that could see the origin year and later would have changed.
    leaky = with_history(test, PointInTime(perturbed, platforms), test["year"].max() + 1)
    honest = with_history(test, PointInTime(mart, platforms), test["year"].max() + 1)
    assert not np.allclose(
        leaky["publisher_prior_mean_log_sales"].astype(float),
        honest["publisher_prior_mean_log_sales"].astype(float),
        equal_nan=True,
    )


def test_train_rows_all_precede_the_origin(mart):
    train, test = backtest.origin_split(SPEC, mart, platforms_of(mart), ORIGIN)
    assert train["year"].max() < ORIGIN <= test["year"].min()
    assert test["year"].max() == ORIGIN + len(backtest.HORIZONS) - 1
    assert (test["horizon"] == test["year"] - ORIGIN + 1).all()


@pytest.fixture(scope="module")
def result(mart) -> backtest.Backtest:
    return backtest.run(SPEC, mart, platforms_of(mart), origins=(2012, 2013))


def test_backtest_scores_each_origin_horizon_and_baseline(result):
    scores = result.scores
    assert list(scores.columns) == list(backtest.SCORE_COLUMNS)
    candidates = {backtest.MODEL, "median", "label_encoded_forest", "categorical_boosting"}
    assert set(scores["candidate"]) == candidates
    assert set(zip(scores.origin, scores.horizon)) == {
        (o, h) for o in (2012, 2013) for h in backtest.HORIZONS
    }
    metrics = result.metrics
    for name in ("backtest_r2_mean", "backtest_mae_mean", "backtest_rmse_mean",
                 "backtest_r2_h1", "backtest_r2_h2", "backtest_r2_h3",
                 "baseline_median_backtest_r2_mean",
                 "baseline_label_encoded_forest_backtest_r2_mean",
                 "baseline_categorical_boosting_backtest_r2_mean"):
        assert np.isfinite(metrics[name]), name
    model = scores[(scores.candidate == backtest.MODEL) & (scores["shape"] == shapes.FULL)]
    assert metrics["backtest_r2_mean"] == pytest.approx(model["r2"].mean())
    # The sample's label depends on the features: the model beats the median.
    assert metrics["backtest_r2_mean"] > metrics["baseline_median_backtest_r2_mean"] + 0.2
    assert len(result.residuals) == len(shapes.SHAPES) * model["n"].sum()
    assert metrics["backtest_rows"] == model["n"].sum()


def test_every_shape_is_scored_on_the_same_rows_beside_the_four_field_baseline(result):
    """Each request shape gets its own scores on the same test rows, and the
    gate's metric is the shapes' weighted mean."""
    scores, metrics = result.scores, result.metrics
    assert set(scores["shape"]) == set(shapes.SHAPES)
    rows = scores[scores.candidate == backtest.MODEL].groupby("shape")["n"].sum()
    assert rows.nunique() == 1
    for shape in shapes.SHAPES:
        for name in (f"backtest_shape_{shape}_r2_mean", f"backtest_shape_{shape}_mae_mean",
                     f"baseline_{shapes.BASELINE}_backtest_shape_{shape}_r2_mean"):
            assert np.isfinite(metrics[name]), name
    assert metrics["backtest_shape_full_r2_mean"] == pytest.approx(metrics["backtest_r2_mean"])
    weighted = sum(shapes.WEIGHTS[s] * metrics[f"backtest_shape_{s}_r2_mean"]
                   for s in shapes.SHAPES)
    assert metrics["backtest_r2_shapes_mean"] == pytest.approx(weighted)
    # The four-field baseline reads no title or platforms list: the same
    # score whether they are given or not.
    baseline = {s: metrics[f"baseline_{shapes.BASELINE}_backtest_shape_{s}_r2_mean"]
                for s in shapes.SHAPES}
    assert baseline["full"] == baseline["no_platforms"] == baseline["no_title"]
    unseen = result.residuals[result.residuals["shape"] == shapes.NO_TITLE_UNSEEN_PUBLISHER]
    assert not unseen["publisher_seen"].any()


def _residuals(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Errors twice as wide for one genre and for unseen platforms."""
    rng = np.random.default_rng(seed)
    genre = rng.choice(["Shooter", "Puzzle"], n)
    seen = rng.random(n) < 0.8
    scale = np.where(genre == "Shooter", 0.6, 0.3) * np.where(seen, 1.0, 2.0)
    predicted = rng.uniform(0, 1, n)
    return pd.DataFrame({
        "origin": rng.choice([2010, 2011, 2012, 2013], n),
        "horizon": rng.choice([1, 2, 3], n),
        "platform": "P", "genre": genre, "platform_seen": seen,
        "publisher_seen": rng.random(n) < 0.9,
        "predicted": predicted, "actual": predicted + rng.normal(0, 1, n) * scale,
    })


def test_intervals_cover_their_level_in_every_segment():
    coverage = intervals.coverage(_residuals())
    assert list(coverage.columns) == list(intervals.COVERAGE_COLUMNS)
    overall = coverage[coverage.segment == "overall"].iloc[0]
    assert 0.77 <= overall.coverage <= 0.83
    for row in coverage.itertuples():
        assert 0.72 <= row.coverage <= 0.88, row
    unseen = coverage[(coverage.segment == "platform") & (coverage.value == "unseen")].iloc[0]
    seen = coverage[(coverage.segment == "platform") & (coverage.value == "seen")].iloc[0]
    assert unseen.median_width > seen.median_width


def test_each_request_shape_gets_intervals_from_its_own_errors():
    """Errors twice as wide without a title: that shape's intervals are wider
    and both cover their level; a calibration stored before shapes serves
    its bins to full requests."""
    full, untitled = _residuals(seed=1), _residuals(seed=2)
    untitled["actual"] = untitled["predicted"] + 2 * (untitled["actual"] - untitled["predicted"])
    residuals = pd.concat([full.assign(shape="full"), untitled.assign(shape="no_title")],
                          ignore_index=True)
    calibration = intervals.calibrate(residuals)
    narrow = calibration.interval(np.log1p(1.0), "Shooter", True, "full")
    wide = calibration.interval(np.log1p(1.0), "Shooter", True, "no_title")
    assert wide["upper"] - wide["lower"] > narrow["upper"] - narrow["lower"]
    coverage = intervals.coverage(residuals)
    for shape in ("full", "no_title"):
        row = coverage[(coverage.segment == "shape") & (coverage.value == shape)].iloc[0]
        assert 0.77 <= row.coverage <= 0.83, shape
    before = intervals.calibrate(full)
    stored = before.to_json().replace("full|", "")
    assert intervals.Calibration.from_json(stored).bins == before.bins


def test_calibration_round_trips_and_gives_ordered_bounds_in_millions():
    calibration = intervals.calibrate(_residuals())
    again = intervals.Calibration.from_json(calibration.to_json())
    assert again == calibration
    wide = calibration.interval(np.log1p(1.0), "Shooter", False)
    narrow = calibration.interval(np.log1p(1.0), "Puzzle", True)
    assert wide["level"] == intervals.LEVEL
    assert 0 <= wide["lower"] < 1.0 < wide["upper"]
    assert wide["upper"] - wide["lower"] > narrow["upper"] - narrow["lower"]
    # A bin without enough residuals falls back to the pooled offsets.
    assert calibration.offsets("Racing", True) == calibration.pooled


def test_goals_are_measured_beside_baselines_and_check_the_serving_path(mart):
    from ml.modeling import goals

    reference = pd.concat([
        platforms_of(mart),
        pd.DataFrame([{"platform_code": "NS", "manufacturer": "Nintendo", "generation": 9.0,
                       "platform_kind": "home", "launch_year": 2017.0}]),
    ], ignore_index=True)
    history = PointInTime(mart.assign(publisher="Nintendo"), reference)
    metrics = {"time_test_r2": 0.5, "baseline_median_time_test_r2": -0.01,
               "backtest_r2_mean": 0.46, "baseline_median_backtest_r2_mean": -0.1,
               "interval_coverage": 0.8, "interval_coverage_min_segment": 0.69}
    measured = {g.goal: g for g in goals.check(metrics, history)}
    met = [g.met for g in measured.values()]
    assert met == [False, True, True, False, True, True]
    # With shapes: no title must reach both the four-field baseline and 0.30.
    shaped = {**metrics, "backtest_r2_shapes_mean": 0.4,
              **{f"backtest_shape_{s}_r2_mean": 0.35 for s in shapes.SHAPES},
              **{f"interval_coverage_shape_{s}": 0.8 for s in shapes.SHAPES},
              f"baseline_{shapes.BASELINE}_backtest_shape_no_title_r2_mean": 0.36}
    by_goal = {g.goal: g for g in goals.check(shaped, history)}
    no_title = by_goal["backtest mean log1p R², no title (the four required fields)"]
    assert not no_title.met and no_title.baselines == f"{shapes.BASELINE} 0.360"
    shaped[f"baseline_{shapes.BASELINE}_backtest_shape_no_title_r2_mean"] = 0.2
    assert all(g.met for g in goals.check(shaped, history) if "request shape" in g.goal
               or "no title" in g.goal)
    time_goal = next(iter(measured.values()))
    assert time_goal.baselines == "median -0.010"
    assert "**no**" in goals.to_markdown(list(measured.values()))
    # A forecast three years past the data has counts from the data, not zeros.
    zero_filled, undescribed = goals.future_forecast_problems(history)
    assert zero_filled == [] and undescribed == []
