"""The one way Python code connects to the warehouse.

Every module that reads or writes MariaDB goes through `connect` (reader by
default) or `begin` (a transaction, writer by default). Pooling is decided
here, once: none. The ML layer runs a handful of queries per process, in
flows, CLIs and the API's fallback mart read, so a fresh connection per use
costs milliseconds and leaves nothing open across forks or dropped databases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from ml.settings import Settings


def engine(settings: Settings, *, reader: bool) -> sa.Engine:
    """An unpooled engine as the reader (`reader=True`) or the writer."""
    return sa.create_engine(settings.sqlalchemy_url(reader=reader), poolclass=sa.pool.NullPool)


@contextlib.contextmanager
def connect(settings: Settings, *, reader: bool = True) -> Iterator[sa.Connection]:
    """A connection, closed on exit; the reader user unless `reader=False`."""
    with engine(settings, reader=reader).connect() as connection:
        yield connection


@contextlib.contextmanager
def begin(settings: Settings, *, reader: bool = False) -> Iterator[sa.Connection]:
    """A transaction, committed on a clean exit; the writer user by default."""
    with engine(settings, reader=reader).begin() as connection:
        yield connection
