"""Two test suites on one stack: a second run's fixtures beside this one's.

Each run has its own database names, Redis dbs and MLflow stores
(tests/helpers.py `TestRun`); releasing one drops only what it made.
"""

from __future__ import annotations

import pymysql
import redis

from ml.settings import Settings
from tests.helpers import TestRun, current_run, isolated_settings


def connect(settings: Settings) -> pymysql.Connection:
    return pymysql.connect(
        host=settings.mariadb_host, port=settings.mariadb_port, user=settings.mariadb_user,
        password=settings.mariadb_password.get_secret_value(), charset="utf8mb4", autocommit=True,
    )


def leave_a_mark(settings: Settings, mark: str) -> None:
    """What a suite's fixtures do: fill their database and Redis db."""
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute(f"create database if not exists `{settings.mariadb_database}`")
        cursor.execute(f"create or replace table `{settings.mariadb_database}`.marks (mark text)")
        cursor.execute(f"insert into `{settings.mariadb_database}`.marks values (%s)", (mark,))
    with redis.Redis.from_url(settings.redis_url) as client:
        client.flushdb()
        client.set("mark", mark)


def marks(settings: Settings) -> tuple[list[str] | None, list[bytes]]:
    """(rows of the marks table or None without the database, Redis keys' values)."""
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute("show databases like %s", (settings.mariadb_database,))
        rows = None
        if cursor.fetchone():
            cursor.execute(f"select mark from `{settings.mariadb_database}`.marks")
            rows = [mark for (mark,) in cursor.fetchall()]
    with redis.Redis.from_url(settings.redis_url) as client:
        values = [client.get(key) for key in client.keys()]
    return rows, values


def test_a_second_run_beside_this_one_does_not_interfere(stack_settings, tmp_path):
    first = current_run(stack_settings.run_dir)
    second = TestRun.claim(stack_settings.run_dir)
    try:
        assert (second.run_id, second.slot) != (first.run_id, first.slot)
        assert second.slot != first.slot
        ours = isolated_settings(stack_settings, "probe", 2, tmp_path / "first")
        theirs = isolated_settings(stack_settings, "probe", 2, tmp_path / "second", run=second)
        for name in ("mariadb_database", "redis_url", "mlflow_tracking_uri", "prefect_home"):
            assert getattr(ours, name) != getattr(theirs, name), name
        assert stack_settings.redis_url.rsplit("/", 1)[1] not in (
            ours.redis_url.rsplit("/", 1)[1], theirs.redis_url.rsplit("/", 1)[1])

        leave_a_mark(ours, "first")
        leave_a_mark(theirs, "second")
        assert marks(ours) == (["first"], [b"first"])
        assert marks(theirs) == (["second"], [b"second"])
    finally:
        dropped = second.release(stack_settings)
    assert dropped == [theirs.mariadb_database]
    assert marks(theirs) == (None, [])
    # The first run's data survived the second run's clean-up.
    assert marks(ours) == (["first"], [b"first"])


def test_a_held_slot_is_not_handed_out_again(stack_settings):
    first = current_run(stack_settings.run_dir)
    claims = [TestRun.claim(stack_settings.run_dir) for _ in range(2)]
    try:
        slots = [first.slot] + [claim.slot for claim in claims]
        assert len(set(slots)) == 3
    finally:
        for claim in claims:
            claim.release(stack_settings)
    # A released slot is free for the next run.
    again = TestRun.claim(stack_settings.run_dir)
    again.release(stack_settings)
    assert again.slot in [claim.slot for claim in claims]
