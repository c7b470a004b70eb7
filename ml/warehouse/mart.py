"""Read the ML mart from MariaDB with the read-only user.

The mart's column types are declared once, in `ml.features.MART_DTYPES`;
this module applies them, so training, snapshots and drift checks all see
category / str / Int64 / float64 columns regardless of what the driver
returns (pymysql gives Decimal for DECIMAL and object for nullable ints).
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from ml.features import MART_DTYPES
from ml.settings import Settings
from ml.warehouse import engine as warehouse
from ml.warehouse.identifiers import quoted

MART_TABLE = "ml_release_features"


class MartError(RuntimeError):
    """The mart is missing or does not have the columns the ML layer reads."""


def _typed(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in MART_DTYPES if c not in frame.columns]
    if missing:
        raise MartError(
            f"{where} lacks column(s) {', '.join(missing)}; rebuild it with "
            "`dbt build --select +ml_release_features`"
        )
    out = frame[list(MART_DTYPES)].copy()
    for column, dtype in MART_DTYPES.items():
        values = out[column]
        if dtype == "Int64":
            out[column] = pd.to_numeric(values).astype("Int64")
        elif dtype == "float64":
            out[column] = pd.to_numeric(values).astype("float64")
        else:
            out[column] = values.astype(dtype)
    return out


def read_ml_mart(settings: Settings) -> pd.DataFrame:
    """The whole `ml_release_features` mart, typed, ordered by release_id.

    Only the columns in `MART_DTYPES` are returned. Ordering makes two reads
    of the same data byte-identical (the snapshot key is a content hash).
    """
    table = quoted(settings.mariadb_database, MART_TABLE)
    columns = ", ".join(quoted(c) for c in MART_DTYPES)
    query = f"select {columns} from {table} order by release_id"
    return _typed(_select(settings, table, query), table)


def _select(settings: Settings, table: str, query: str) -> pd.DataFrame:
    """`query` over `table` as the reader; a missing table says what to run."""
    try:
        with warehouse.connect(settings) as connection:
            result = connection.execute(sa.text(query))
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    except sa.exc.ProgrammingError as exc:
        raise MartError(
            f"cannot read {table} as {settings.mariadb_reader_user}: {exc.orig}; "
            "has `dbt build` run for this database?"
        ) from exc


def mart_fingerprint(settings: Settings) -> str:
    """A cheap identity of the mart's current content, without reading it.

    MariaDB's `CHECKSUM TABLE` hashes every row server-side; with the row
    count it changes whenever the content does and stays equal across dbt
    rebuilds of the same data, so a rerun can recognise an unchanged mart.
    """
    table = quoted(settings.mariadb_database, MART_TABLE)
    with warehouse.connect(settings) as connection:
        # A missing table gives a NULL checksum (and a warning), not an error.
        checksum = connection.execute(sa.text(f"checksum table {table}")).one()[1]
        if checksum is None:
            raise MartError(f"{table} does not exist; run `dbt build` first")
        rows = connection.execute(sa.text(f"select count(*) from {table}")).scalar_one()
    return f"{rows}-{checksum}"


def read_platforms(settings: Settings) -> pd.DataFrame:
    """The platform reference (`dim_platform` without its unknown member):
    code, maker, generation, kind and launch year of every recognised
    platform, including those the data has no release of yet."""
    table = quoted(settings.mariadb_database, "dim_platform")
    query = (
        "select platform_code, manufacturer, generation, platform_kind, launch_year "
        f"from {table} where not is_unknown order by platform_code"
    )
    frame = _select(settings, table, query)
    for column in ("generation", "launch_year"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def read_written_names(settings: Settings) -> pd.DataFrame:
    """The name reference (`ml_written_names`): every written name of a
    publisher, genre or platform the seeds know, and the name the data files
    it under (`ml.modeling.names.NameReference.from_frame` reads it)."""
    table = quoted(settings.mariadb_database, "ml_written_names")
    query = (
        "select name_field, written_name, canonical_name, link_kind "
        f"from {table} order by name_field, written_name"
    )
    return _select(settings, table, query)
