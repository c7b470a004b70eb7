"""Request shapes: how test rows are shaped, a served request told apart,
and the model that answers each."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml import features
from ml.modeling import shapes
from ml.modeling.point_in_time import PointInTime, platforms_of
from tests.mart_sample import mart_frame

TITLE = ["series_prior_titles", "series_prior_mean_log_sales"]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return features.training_rows("prerelease", mart_frame(2000, seed=3))


def test_each_shape_leaves_out_what_its_request_cannot_carry(rows):
    full = shapes.shaped(rows, shapes.FULL)
    pd.testing.assert_frame_equal(full, rows)
    no_platforms = shapes.shaped(rows, shapes.NO_PLATFORMS)
    assert no_platforms["title_platform_count"].isna().all()
    assert no_platforms[TITLE].notna().equals(rows[TITLE].notna())
    no_title = shapes.shaped(rows, shapes.NO_TITLE)
    assert no_title[[*TITLE, "title_platform_count"]].isna().all().all()
    assert no_title["publisher"].equals(rows["publisher"])
    unseen = shapes.shaped(rows, shapes.NO_TITLE_UNSEEN_PUBLISHER)
    assert unseen["publisher"].isna().all()
    assert (unseen["publisher_prior_titles"] == 0).all()
    assert unseen["publisher_prior_mean_log_sales"].isna().all()
    # The rows themselves are untouched.
    assert rows["title_platform_count"].notna().any()


def test_a_served_request_is_told_its_shape_from_what_it_carried(rows):
    history = PointInTime(rows, platforms_of(rows))
    publisher = str(rows["publisher"].iloc[0])
    known = {publisher}
    base = {"platform": str(rows["platform"].iloc[0]), "genre": "Action",
            "publisher": publisher, "year": 2016}
    cases = {
        shapes.FULL: {**base, "name": "Some Title 2", "platforms": ["PS4", "XOne"]},
        shapes.NO_PLATFORMS: {**base, "name": "Some Title 2"},
        shapes.NO_TITLE: base,
        shapes.NO_TITLE_UNSEEN_PUBLISHER: {**base, "publisher": "Never Seen Studio"},
    }
    for expected, request in cases.items():
        assert shapes.shape_of(history.complete(request), known) == expected, expected


def test_scores_gather_each_shapes_figures_or_none_without_shapes():
    metrics = {f"backtest_shape_{s}_r2_mean": float(i) for i, s in enumerate(shapes.SHAPES)}
    metrics[f"baseline_{shapes.BASELINE}_backtest_shape_no_title_r2_mean"] = 0.2
    table = shapes.scores(metrics)
    assert list(table) == list(shapes.SHAPES)
    assert table["no_title"]["r2"] == 2.0 and table["no_title"]["baseline_r2"] == 0.2
    assert table["full"]["interval_coverage"] is None
    assert shapes.scores({"backtest_r2_mean": 0.5}) is None
    assert np.isclose(sum(shapes.WEIGHTS.values()), 1.0)
