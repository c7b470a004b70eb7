"""Forecast completion: the as-of lookups against a brute-force count, and a
batch completed at once equal to its records completed one by one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml.modeling.names import NameReference
from ml.modeling.point_in_time import PointInTime, platforms_of, series_group, series_key
from tests.mart_sample import PLATFORMS, PUBLISHERS, mart_frame


@pytest.fixture(scope="module")
def mart():
    frame = mart_frame(3000, seed=4)
    frame["series_key"] = [series_key(f"Saga {i % 60}: part {i}") for i in range(len(frame))]
    return frame


def _requests(count: int, seed: int = 0) -> list[dict]:
    """Requests over known and unknown publishers, platforms and series, past
    and future years, with and without optional fields."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        record = {
            "year": int(rng.integers(1990, 2030)),
            "platform": str(rng.choice([*PLATFORMS, "NEW"])),
            "publisher": str(rng.choice([*PUBLISHERS, "Nobody"])),
            "genre": "Action",
        }
        if i % 4:
            record["name"] = f"Saga {int(rng.integers(0, 80))}: chapter {i}"
        if i % 3 == 0:
            record["platforms"] = ["PC", "PS4"]
        if i % 7 == 0:
            record["series_prior_titles"] = 2.0
        out.append(record)
    return out


def _brute_force(mart, kind: str, key: str, as_of: int) -> tuple[float, float | None]:
    column = "publisher" if kind == "publisher" else "series_key"
    values = mart[column].astype(str)
    if kind == "series":
        values = values.map(series_group)
    rows = mart[(values == key) & (mart["year"] < as_of)]
    if rows.empty:
        return 0.0, None
    return float(len(rows)), float(rows["log_global_sales"].mean())


def test_lookups_count_what_came_before(mart):
    history = PointInTime(mart, platforms_of(mart))
    for record in _requests(300):
        as_of = history.forecast_as_of(record["year"])
        got = history.complete(record)
        titles, mean = _brute_force(mart, "publisher", record["publisher"], as_of)
        assert got["publisher_prior_titles"] == titles
        assert (got["publisher_prior_mean_log_sales"] is None) == (mean is None)
        if mean is not None:
            assert math.isclose(got["publisher_prior_mean_log_sales"], mean, rel_tol=1e-9)
        if "name" in record and "series_prior_titles" not in record:
            titles, _ = _brute_force(mart, "series", series_group(series_key(record["name"])), as_of)
            assert got["series_prior_titles"] == titles
        catalogue = int(((mart["platform"] == record["platform"]) & (mart["year"] == as_of - 1)).sum())
        assert got["platform_titles_prior_year"] == catalogue


def test_a_batch_completes_as_its_records_do(mart):
    history = PointInTime(mart, platforms_of(mart))
    records = _requests(400, seed=1)
    one_by_one = [history.complete(record) for record in records]
    together = history.complete_many(records)
    assert together == one_by_one
    assert {type(v) for row in together for v in row.values()} <= {int, float, str, type(None)}
    assert history.complete_many([]) == []


def test_a_linked_publisher_and_platform_get_the_canonical_history(mart):
    names = NameReference([
        ("publisher", "Publisher 03 Renamed", "Publisher 03", "rename"),
        ("platform", "PlayStation 4", "PS4", "name"),
    ])
    history = PointInTime(mart, platforms_of(mart), names)
    asked = {"year": 2012, "genre": "Action", "name": "Saga 5: again"}
    linked = history.complete({**asked, "publisher": "publisher 03 renamed",
                               "platform": "PlayStation 4"})
    filed = history.complete({**asked, "publisher": "Publisher 03", "platform": "PS4"})
    assert linked == filed and filed["publisher_prior_titles"] > 0
    # Without the reference the same request has no history at all.
    plain = PointInTime(mart, platforms_of(mart)).complete(
        {**asked, "publisher": "Publisher 03 Renamed", "platform": "PS4"})
    assert plain["publisher_prior_titles"] == 0
