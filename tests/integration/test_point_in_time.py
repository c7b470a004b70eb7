"""The Python point-in-time features equal dbt's, on every row of the real file.

Serving and the backtest compute history with `ml.modeling.point_in_time`;
the mart computes it in SQL (`int_releases__prior_performance`, the
`series_key` macro). Both definitions are compared here over the mart dbt
built from the real vgsales.csv (the `built_mart` fixture), so neither can
drift from the other unnoticed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ml.modeling import point_in_time
from ml.modeling.point_in_time import PointInTime, series_key
from ml.warehouse.engine import connect
from tests.conftest import REAL_CSV

pytestmark = pytest.mark.slow


def _same(python: pd.Series, sql: pd.Series) -> pd.Series:
    """Row-wise equality, missing equal to missing, numbers to 1e-9."""
    if python.dtype == object or isinstance(sql.dtype, pd.CategoricalDtype):
        equal = python.astype(str).to_numpy() == sql.astype(str).to_numpy()
    else:
        a, b = python.astype("float64").to_numpy(), sql.astype("float64").to_numpy()
        equal = np.isclose(a, b, rtol=0, atol=1e-9)
    return pd.Series(equal | (python.isna().to_numpy() & sql.isna().to_numpy()))


@pytest.mark.parametrize("column", point_in_time.LOOKED_UP)
def test_history_as_of_each_release_equals_the_mart(built_mart, built_platforms, column):
    """As of its own year, every release's features equal the mart's columns."""
    looked_up = PointInTime(built_mart, built_platforms).history(built_mart, built_mart["year"])
    same = _same(looked_up[column], built_mart[column].reset_index(drop=True))
    differing = built_mart.loc[~same.to_numpy(), ["name", "platform", "publisher", "year", column]]
    assert same.all(), f"{(~same).sum()} rows differ, e.g.\n{differing.head()}"
    if REAL_CSV.exists():
        assert len(built_mart) > 16_000


def test_python_series_key_equals_the_macro_on_every_title(marts_settings, built_mart):
    """`series_key(name)` is the macro's value for every title of the file."""
    with connect(marts_settings) as connection:
        games = pd.DataFrame(
            connection.execute(sa.text("select game_name, series_key from dim_game")).fetchall(),
            columns=["game_name", "series_key"],
        )
    assert len(games) >= built_mart["name"].nunique()
    python = games["game_name"].map(series_key)
    differing = games[python != games["series_key"]]
    assert differing.empty, f"{len(differing)} titles differ, e.g.\n{differing.head()}"


def test_platform_reference_describes_platforms_without_releases(built_mart, built_platforms):
    """NS, PS5 and Xbox Series are in the reference though the file ends before them."""
    history = PointInTime(built_mart, built_platforms)
    for code, launch in (("NS", 2017), ("PS5", 2020), ("XS", 2020)):
        assert code not in set(built_mart["platform"].astype(str))
        described = history.platform_attributes(code, 2021)
        assert described["platform_age_years"] == 2021 - launch
        assert described["platform_generation"] == 9
    assert history.last_complete_year == int(built_mart["year"].dropna().astype(int).value_counts()
                                             .loc[lambda c: c >= 0.05 * c.max()].index.max())
