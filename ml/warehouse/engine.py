"""The one way Python code connects to the warehouse.

Every module that reads or writes MariaDB goes through `connect` (reader by
default) or `begin` (a transaction, writer by default). Pooling is decided
here, once, by how long the process lives:

- flows, CLIs and the API's fallback mart read run a handful of queries per
  process: an unpooled engine, a fresh connection per use, which costs
  milliseconds and leaves nothing open across forks or dropped databases;
- a process that writes all the time (the prediction-log consumer) holds
  one connection (`held`): a new engine per batch would connect, log in and
  let SQLAlchemy query the server's settings again every time, which cost as
  much CPU as the API itself at low load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from ml.settings import Settings

# A held connection is replaced after this long (MariaDB's wait_timeout, 8 h
# by default, would otherwise close it under us while the consumer idles).
RECYCLE_SECONDS = 3600


def engine(settings: Settings, *, reader: bool, database: bool = True) -> sa.Engine:
    """An unpooled engine as the reader (`reader=True`) or the writer; with
    `database=False`, on the server alone (no default database: it may not
    exist yet)."""
    url = sa.make_url(settings.sqlalchemy_url(reader=reader))
    if not database:  # URL.set(database=None) keeps the database
        url = sa.URL.create(url.drivername, url.username, url.password, url.host, url.port,
                            query=url.query)
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def held(settings: Settings, *, reader: bool) -> sa.Engine:
    """An engine holding one connection, for a long-lived process; dispose of it at exit.

    No ping before each use and no rollback after it (a round trip each per
    transaction): the engine is for `begin` blocks, which end in a commit or
    a rollback of their own; a connection the server dropped fails one
    transaction, which the caller retries, and the pool replaces it.
    """
    return sa.create_engine(
        settings.sqlalchemy_url(reader=reader), pool_size=1, max_overflow=0,
        pool_recycle=RECYCLE_SECONDS, pool_reset_on_return=None,
    )


@contextlib.contextmanager
def connect(settings: Settings, *, reader: bool = True) -> Iterator[sa.Connection]:
    """A connection, closed on exit; the reader user unless `reader=False`."""
    with engine(settings, reader=reader).connect() as connection:
        yield connection


@contextlib.contextmanager
def begin(
    settings: Settings, *, reader: bool = False, using: sa.Engine | None = None
) -> Iterator[sa.Connection]:
    """A transaction, committed on a clean exit; the writer user by default.

    `using` is a `held` engine to take the connection from.
    """
    with (using or engine(settings, reader=reader)).begin() as connection:
        yield connection
