"""The warehouse's landing tables for monitoring, as Python writes into them.

dbt declares them (macros/monitoring/create_monitoring_landing_tables.sql,
run on every dbt invocation) in `<db>_raw`; `ml.monitoring.drain` and
`ml.monitoring.reference` append to them. A database dbt never ran on has none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from ml.settings import Settings
from ml.warehouse import engine as warehouse
from ml.warehouse.identifiers import quoted

# MariaDB's "unknown database" and "table doesn't exist".
MISSING = (1049, 1146)


class LandingTableMissing(RuntimeError):
    """A landing table does not exist: dbt never ran on this database."""


def table(settings: Settings, name: str) -> str:
    """The qualified name of landing table `name`."""
    return quoted(settings.raw_database, name)


@contextlib.contextmanager
def transaction(settings: Settings, using: sa.Engine | None = None) -> Iterator[sa.Connection]:
    """A transaction as the writer user (on the `held` engine `using`, if
    given); a missing table says what to run."""
    try:
        with warehouse.begin(settings, using=using) as connection:
            yield connection
    except (sa.exc.ProgrammingError, sa.exc.OperationalError) as error:
        if getattr(error.orig, "args", (None,))[0] in MISSING:
            raise LandingTableMissing(
                f"{error.orig.args[1]}: the monitoring landing tables of "
                f"{settings.raw_database} are created by dbt; run `make pipeline` "
                "(or any dbt command) on this database first"
            ) from error
        raise
