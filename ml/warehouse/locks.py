"""Named locks in the warehouse's MariaDB, so flows on several workers take turns
where they would otherwise collide.

A pipeline run and a drift check may run at once (two Prefect workers, or a
`make pipeline` while the scheduled check runs). Most of their steps are
independent; two are not:

- a dbt invocation that writes (`build`, `run`, `seed`, `snapshot`) on the
  same database: both would create and rename the same tables;
- the champion gate of one model: two registrations at once would each
  compare with the same champion and could both take the alias.

MariaDB's `GET_LOCK` is what both sides already reach (every flow talks to
the warehouse). The lock belongs to the connection that took it, so a
process killed while holding it releases it with its connection: nothing to
clean up by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa

from ml.settings import Settings
from ml.warehouse.engine import engine

# How long a flow waits for the other one before giving up: a 1M-row build
# takes minutes, so the wait is generous; the progress lines say who waits.
DEFAULT_WAIT_SECONDS = 3600
# GET_LOCK is asked in slices this long, so the waiting side can say so.
POLL_SECONDS = 10
# MariaDB refuses lock names over 64 characters.
MAX_NAME = 64


class LockTimeout(TimeoutError):
    """Another process held the lock for longer than the caller would wait."""


def lock_name(kind: str, subject: str) -> str:
    """`vgsales:<kind>:<subject>`, shortened with a digest past MariaDB's 64 characters."""
    name = f"vgsales:{kind}:{subject}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(subject.encode()).hexdigest()[:16]
    return f"vgsales:{kind}:{subject[: MAX_NAME - len(kind) - 27]}~{digest}"


def build_lock_name(settings: Settings) -> str:
    """The lock every writing dbt invocation on this database holds."""
    return lock_name("dbt", settings.mariadb_database)


def gate_lock_name(model_name: str) -> str:
    """The lock a registration holds while the champion gate decides."""
    return lock_name("gate", model_name)


@contextlib.contextmanager
def held_lock(
    settings: Settings,
    name: str,
    *,
    purpose: str,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    log: Callable[[str], object] = print,
) -> Iterator[None]:
    """Hold the named lock for the block, waiting up to `wait_seconds` for it.

    While waiting, says every `POLL_SECONDS` which connection holds it. Raises
    `LockTimeout` (naming the lock and its holder) when the wait runs out.
    """
    # Named locks are the server's, not a database's; the first build of a
    # database takes its lock before dbt has created it.
    with engine(settings, reader=True, database=False).connect() as connection:
        deadline, waited = time.monotonic() + wait_seconds, False
        while True:
            slice_s = max(0, min(POLL_SECONDS, int(deadline - time.monotonic())))
            got = connection.execute(
                sa.text("SELECT GET_LOCK(:name, :seconds)"), {"name": name, "seconds": slice_s}
            ).scalar()
            if got == 1:
                break
            holder = connection.execute(
                sa.text("SELECT IS_USED_LOCK(:name)"), {"name": name}
            ).scalar()
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{purpose}: lock {name!r} still held by MariaDB connection {holder} "
                    f"after {wait_seconds:.0f} s; another flow is running on this warehouse"
                )
            log(f"{purpose}: waiting for lock {name!r} (held by MariaDB connection {holder})")
            waited = True
        if waited:
            log(f"{purpose}: lock {name!r} taken")
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
