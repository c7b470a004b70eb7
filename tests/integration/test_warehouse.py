"""Reading the ML mart from the real MariaDB with the read-only user.

The table is created here with the mart's SQL types (DECIMAL sales, nullable
INT history) rather than by a dbt build, which other tests already run: what
is under test is the typing of what the driver returns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ml.features import MART_DTYPES
from ml.warehouse.mart import MART_TABLE, MartError, mart_fingerprint, read_ml_mart
from tests.helpers import isolated_settings
from tests.mart_sample import mart_frame

SQL_TYPES = {
    "str": "varchar(200)",
    "category": "varchar(100)",
    "Int64": "int",
    "float64": "double",
}
DECIMALS = ("na_sales", "eu_sales", "jp_sales", "other_sales", "global_sales")


@pytest.fixture(scope="module")
def settings(stack_settings, tmp_path_factory):
    settings = isolated_settings(
        stack_settings, "mlwarehouse", 0, tmp_path_factory.mktemp("mlwarehouse")
    )
    database = settings.mariadb_database
    server = sa.create_engine(settings.sqlalchemy_url().replace(f"/{database}?", "/?"))
    with server.begin() as connection:
        connection.execute(sa.text(f"drop database if exists `{database}`"))
        connection.execute(sa.text(f"create database `{database}`"))
    server.dispose()
    return settings


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return mart_frame(300, seed=4)


@pytest.fixture(scope="module")
def writer(settings, sample):
    columns = ",\n".join(
        f"`{name}` {'decimal(8,2)' if name in DECIMALS else SQL_TYPES[dtype]}"
        for name, dtype in MART_DTYPES.items()
    )
    engine = sa.create_engine(settings.sqlalchemy_url())
    with engine.begin() as connection:
        connection.execute(sa.text(f"create table {MART_TABLE} ({columns}, extra int)"))
    sample.assign(extra=1).to_sql(MART_TABLE, engine, if_exists="append", index=False)
    yield engine
    engine.dispose()


def test_read_ml_mart_types_every_column(settings, writer, sample):
    frame = read_ml_mart(settings)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == MART_DTYPES
    expected = sample.sort_values("release_id").reset_index(drop=True)
    assert list(frame.release_id) == list(expected.release_id)
    assert np.allclose(frame.global_sales, expected.global_sales)
    assert frame.year.isna().sum() == expected.year.isna().sum() > 0
    assert frame.split_time.isna().sum() == expected.split_time.isna().sum()
    assert "extra" not in frame.columns


def test_fingerprint_is_stable_and_follows_content(settings, writer):
    first = mart_fingerprint(settings)
    assert mart_fingerprint(settings) == first
    with writer.begin() as connection:
        connection.execute(
            sa.text(f"update {MART_TABLE} set global_sales = global_sales + 1 limit 1")
        )
    assert mart_fingerprint(settings) != first


def test_missing_mart_says_to_build_it(settings, writer):
    with writer.begin() as connection:
        connection.execute(sa.text(f"rename table {MART_TABLE} to {MART_TABLE}_away"))
    try:
        with pytest.raises(MartError, match="dbt build"):
            read_ml_mart(settings)
        with pytest.raises(MartError, match="does not exist"):
            mart_fingerprint(settings)
    finally:
        with writer.begin() as connection:
            connection.execute(sa.text(f"rename table {MART_TABLE}_away to {MART_TABLE}"))
