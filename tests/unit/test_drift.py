"""Drift logic that needs no warehouse: reference bins, stream-entry parsing,
the decision and its reason, the report, and the refresh generator.

The warehouse side (dbt computing PSI against these bins, the drain on real
Redis and MariaDB, the flow retraining) is tested in tests/system/test_monitoring.py;
its batch-drift assertion (PSI exactly 0 on the champion's own data) is what
proves Python's bins and dbt's binning agree.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from ml import features
from ml.data import refresh as synthetic_refresh
from ml.data import synthetic
from ml.modeling.train import fitting_rows
from ml.monitoring.drain import entry_rows
from ml.monitoring.drift import NONE, RETRAIN, WARN, DriftCheck, DriftTest
from ml.monitoring.reference import (
    MISSING,
    NUMERIC_BINS,
    OTHER,
    TOP_CATEGORIES,
    profile,
)
from ml.reporting.drift_report import Action, decision_line, to_html, to_markdown
from tests.mart_sample import mart_frame


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return mart_frame(1500, seed=3)


@pytest.mark.parametrize("model_name", features.MODEL_NAMES)
def test_profile_covers_every_feature_and_every_fitted_row(mart, model_name):
    spec = features.spec(model_name)
    bins = profile(spec, mart)
    train_rows = len(fitting_rows(spec, mart))
    assert sorted(bins.feature.unique()) == sorted(spec.columns)
    per_feature = bins.groupby("feature").reference_rows.sum()
    assert (per_feature == train_rows).all(), per_feature
    assert not bins.duplicated(["feature", "member"]).any()


def test_numeric_bins_are_deciles_that_tile_the_line(mart):
    bins = profile(features.spec("prerelease"), mart)
    year = bins[(bins.feature == "publisher_prior_titles") & (bins.member != MISSING)
                ].sort_values("bin_order")
    assert 2 <= len(year) <= NUMERIC_BINS
    assert pd.isna(year.lower_bound.iloc[0]) and pd.isna(year.upper_bound.iloc[-1])
    # Consecutive intervals share their edge: no gap, no overlap.
    assert (year.upper_bound.iloc[:-1].to_numpy() == year.lower_bound.iloc[1:].to_numpy()).all()
    assert year.member.iloc[0].startswith("(-inf, ") and year.member.iloc[-1].endswith("+inf)")
    # Deciles: no bin holds much more than its tenth (ties can merge edges).
    assert year.reference_rows.max() < 0.3 * year.reference_rows.sum()


def test_missing_numbers_get_their_own_bin(mart):
    spec = features.spec("prerelease")
    bins = profile(spec, mart)
    train = fitting_rows(spec, mart)
    series = bins[bins.feature == "series_prior_mean_log_sales"]
    missing = series[series.member == MISSING]
    assert int(missing.reference_rows.iloc[0]) == int(
        train.series_prior_mean_log_sales.isna().sum()
    ) > 0


def test_rare_categories_share_the_other_bin():
    frame = mart_frame(1500, seed=3)
    # 30 extra publishers seen once each: more than TOP_CATEGORIES in all.
    train_index = frame.index[frame.split_time == "train"][:30]
    frame["publisher"] = frame["publisher"].astype(object)
    frame.loc[train_index, "publisher"] = [f"Tiny Studio {i}" for i in range(30)]
    bins = profile(features.spec("prerelease"), frame)
    publishers = bins[bins.feature == "publisher"]
    own = publishers[publishers.bin_label != OTHER]
    assert len(own) == TOP_CATEGORIES
    other = publishers[publishers.bin_label == OTHER]
    assert len(other) == len(publishers) - TOP_CATEGORIES > 0
    assert other.member.str.startswith("Tiny Studio").all()
    # The most frequent are the ones kept.
    assert own.reference_rows.min() >= publishers[publishers.bin_label == OTHER].reference_rows.max()


def test_a_category_named_like_a_drift_bin_is_refused():
    frame = mart_frame(600, seed=1)
    frame["genre"] = frame["genre"].astype(object)
    frame.loc[frame.index[frame.split_time == "train"][0], "genre"] = "(unseen)"
    with pytest.raises(ValueError, match="reserved"):
        profile(features.spec("prerelease"), frame)


def _entry(**overrides) -> dict[bytes, bytes]:
    fields = {
        "ts": "1767225600.5",
        "endpoint": "/v1/forecast/batch",
        "request_id": "req-1",
        "model": "prerelease",
        "version": "3",
        "features": json.dumps([{"platform": "PS4", "year": 2015}, {"platform": "Wii"}]),
        "predictions": json.dumps([1.5, 0.25]),
        "unseen": json.dumps([[], ["platform"]]),
    }
    fields.update(overrides)
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_a_batch_entry_becomes_one_row_per_record():
    drained_at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    rows = entry_rows("1-0", _entry(), drained_at)
    assert [r["item_index"] for r in rows] == [0, 1]
    assert {r["request_id"] for r in rows} == {"req-1"}
    assert rows[0]["logged_at"] == datetime(2026, 1, 1, 0, 0, 0, 500000)
    assert rows[0]["model_version"] == 3
    assert json.loads(rows[1]["features_json"]) == {"platform": "Wii"}
    assert rows[1]["predicted_global_sales"] == 0.25
    assert json.loads(rows[1]["unseen_json"]) == ["platform"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"predictions": json.dumps([1.0])}, "equally long"),
        ({"features": "not json"}, "JSONDecodeError"),
        ({"version": "latest"}, "ValueError"),
        ({"features": json.dumps([1, 2]), "predictions": "[1, 2]", "unseen": "[[], []]"}, "records"),
    ],
)
def test_malformed_entries_are_refused_with_their_id(overrides, message):
    with pytest.raises(ValueError, match=message) as error:
        entry_rows("7-1", _entry(**overrides), datetime.now(timezone.utc))
    assert "7-1" in str(error.value)


def _check(statuses: dict[str, str], psi: float = 0.4) -> DriftCheck:
    tests = [
        DriftTest(name, "error" if "error" in name else "warn", status, int(status != "pass"))
        for name, status in statuses.items()
    ]
    drift = pd.DataFrame(
        [
            dict(drift_source="predictions", model_name="prerelease", model_version=2,
                 feature="year", feature_kind="number", reference_rows=900,
                 current_rows=600, unseen_rows=0, unseen_rate=np.nan, psi=psi,
                 is_evaluated=True, drift_status="error" if psi >= 0.25 else "ok",
                 psi_warn_threshold=0.1, psi_error_threshold=0.25, window_days=7),
            dict(drift_source="batch", model_name="prerelease", model_version=2,
                 feature="platform", feature_kind="category", reference_rows=900,
                 current_rows=900, unseen_rows=0, unseen_rate=0.0, psi=0.0,
                 is_evaluated=True, drift_status="ok",
                 psi_warn_threshold=0.1, psi_error_threshold=0.25, window_days=7),
        ]
    )
    bins = pd.DataFrame(
        [
            dict(drift_source=source, model_name="prerelease", model_version=2,
                 feature=feature, bin_label=label, bin_order=order,
                 reference_share=ref, current_share=cur)
            for source, feature in (("predictions", "year"), ("batch", "platform"))
            for order, (label, ref, cur) in enumerate(
                [("(-inf, 2005]", 0.5, 0.1), ("(2005, +inf)", 0.5, 0.9)]
            )
        ]
    )
    performance = pd.DataFrame(
        [dict(model_name="prerelease", model_version=2, period_label="all", release_year=None,
              matched_predictions=40, matched_pairs=44, mae=0.3, rmse=0.5, r2=0.2)]
    )
    return DriftCheck(tests=tests, drift=drift, bins=bins, performance=performance)


def test_decision_follows_the_tests_severity():
    assert _check({"psi_error": "fail", "psi_warn": "warn"}).decision == RETRAIN
    assert _check({"psi_error": "pass", "psi_warn": "warn"}, psi=0.15).decision == WARN
    assert _check({"psi_error": "pass", "psi_warn": "pass"}, psi=0.01).decision == NONE


def test_reason_and_headline_name_the_drifted_feature():
    check = _check({"psi_error": "fail", "psi_warn": "warn"})
    assert "prerelease v2 `year` on predictions PSI 0.400" in check.reason()
    assert "psi_error" in check.reason() and "0.25" in check.reason()
    assert check.headline() == "prerelease.year PSI 0.40 (predictions)"
    calm = _check({"psi_error": "pass", "psi_warn": "pass"}, psi=0.01)
    assert calm.reason().startswith("No drift") and "0.010" in calm.reason()


def _unjudged_predictions(check: DriftCheck) -> DriftCheck:
    """20 logged predictions, 80% on a platform training never saw."""
    drift = check.drift.copy()
    drift.loc[0] = dict(drift.loc[0], feature="platform", feature_kind="category",
                        current_rows=20, unseen_rows=16, unseen_rate=0.8, psi=0.0,
                        is_evaluated=False, drift_status="too_few_rows")
    return dataclasses.replace(check, drift=drift)


def test_a_check_that_could_not_judge_says_so_in_its_headline():
    check = _unjudged_predictions(_check({"psi_error": "pass", "psi_warn": "pass"}, psi=0.0))
    assert check.decision == NONE and check.judged_anything
    reason = check.reason()
    assert reason.startswith("No drift: every judged feature")
    assert "Not judged: predictions (20 rows, under drift_min_rows)" in reason
    assert "prerelease v2 `platform` on predictions (80% unseen categories)" in reason
    line = decision_line(check, Action(NONE, reason, ""))
    assert "where it could be judged (not judged: 2, listed below)" in line
    # Nothing judged at all: the headline says no decision could be made.
    nothing = dataclasses.replace(check, drift=check.drift.iloc[:1])
    assert not nothing.judged_anything
    assert nothing.reason().startswith("Could not judge drift")
    assert decision_line(nothing, Action(NONE, nothing.reason(), "")).startswith(
        "Decision: **Not judged**")
    assert "Not judged" in to_markdown(nothing, Action(NONE, nothing.reason(), ""))
    # A check that judged everything keeps the plain headline.
    calm = _check({"psi_error": "pass", "psi_warn": "pass"}, psi=0.01)
    assert decision_line(calm, Action(NONE, calm.reason(), "")) == (
        "Decision: No action: no drift above the thresholds.")


def test_report_has_the_decision_table_and_a_chart_per_feature():
    check = _check({"psi_error": "fail", "psi_warn": "warn"})
    action = Action(RETRAIN, check.reason(), "Retrain run r1: prerelease: the champion stays (x).")
    markdown = to_markdown(check, action)
    assert "Decision: **Retrain**" in markdown and "the champion stays" in markdown
    assert "| prerelease | 2 | predictions | year | 0.4000 |" in markdown
    page = to_html(check, action, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert page.count("data:image/png;base64,") == 2
    assert 'data-chart="prerelease.year"' in page and 'data-chart="prerelease.platform"' in page


def test_refresh_adds_later_years_a_new_platform_and_strays(tmp_path):
    base = synthetic.write_csv(tmp_path / "base.csv", 1000, seed=4)
    summary = synthetic_refresh.write_refresh(base, tmp_path / "new.csv", seed=1)
    again = synthetic_refresh.write_refresh(base, tmp_path / "again.csv", seed=1)
    assert (tmp_path / "new.csv").read_bytes() == (tmp_path / "again.csv").read_bytes()
    assert summary == again
    with (tmp_path / "new.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with base.open() as handle:
        base_rows = list(csv.DictReader(handle))
    assert len(rows) == len(base_rows) + summary.added_rows + summary.stray_rows
    assert sorted(int(r["Rank"]) for r in rows) == list(range(1, len(rows) + 1))
    platforms = [r["Platform"] for r in rows]
    assert platforms.count(synthetic_refresh.NEW_PLATFORM) == summary.new_platform_rows > 10
    assert platforms.count(synthetic_refresh.INVALID_PLATFORM) == 2
    assert platforms.count(synthetic_refresh.RARE_PLATFORM) == synthetic_refresh.RARE_ROWS
    later = [r for r in rows if r["Year"].isdigit() and int(r["Year"]) in summary.added_years]
    assert len(later) == summary.added_rows + summary.stray_rows
    base_names = {(r["Name"], r["Platform"], r["Year"]) for r in base_rows}
    kept = {(r["Name"], r["Platform"], r["Year"]) for r in rows}
    assert base_names <= kept  # nothing earlier is lost
    def sales(table):
        regions = ("NA_Sales", "EU_Sales", "JP_Sales", "Other_Sales")
        return Counter(
            (r["Name"], r["Platform"], r["Year"], *(r[c] for c in regions)) for r in table
        )

    revised = sales(base_rows) - sales(rows)
    assert sum(revised.values()) == summary.revised_rows
