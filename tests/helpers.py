"""Small helpers shared by the tests."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pymysql

from bench.common import free_port  # noqa: F401 - the one definition, used by tests too
from ml.settings import Settings


# Boosting iterations of every model the tests fit, in process or in the
# flows they start (ml/settings.py VGSALES_BOOSTING_ITERATIONS): a tenth of
# the tuned number. Fits, backtests and the gate run the same code; fitting
# is most of the suite's time. VGSALES_BOOSTING_ITERATIONS=250 in the
# environment runs the suite with the tuned models.
BOOSTING_ITERATIONS = "25"


def use_test_training() -> None:
    """Fit test-sized models in this process and the processes it starts,
    unless the environment names a number of iterations (0, the default
    scripts/with-env exports, names none)."""
    if os.environ.get("VGSALES_BOOSTING_ITERATIONS", "0") in ("", "0"):
        os.environ["VGSALES_BOOSTING_ITERATIONS"] = BOOSTING_ITERATIONS


def free_api_ports(settings: Settings) -> Settings:
    """`settings` with a free API_PORT for nginx and free consecutive ports
    from API_INSTANCE_PORT for its instances, for an API under test."""
    for _ in range(100):
        first = free_port()
        block = range(first, first + settings.api_instances)
        if block[-1] < 65536 and all(_port_free(port) for port in block[1:]):
            api_port = free_port()
            if api_port not in block:
                return dataclasses.replace(settings, api_port=api_port, api_instance_port=first)
    raise RuntimeError(f"found no {settings.api_instances} free consecutive loopback ports")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def connect(settings: Settings, *, reader: bool = False, **kwargs) -> pymysql.Connection:
    """A plain pymysql connection (autocommit, utf8mb4) as the writer, or the
    reader with `reader=True`: for tests that check grants, server variables
    and driver options the SQLAlchemy engine hides. No database unless given."""
    secret = settings.mariadb_reader_password if reader else settings.mariadb_password
    return pymysql.connect(
        host=settings.mariadb_host,
        port=settings.mariadb_port,
        user=settings.mariadb_reader_user if reader else settings.mariadb_user,
        password=secret.get_secret_value(),
        charset="utf8mb4",
        autocommit=True,
        **kwargs,
    )


def kill_pid_file(path: Path) -> None:
    """SIGKILL the service whose pid file is `path`, and wait until it is gone."""
    pid = int(path.read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} ({path}) survived SIGKILL")


def api_settings(base: Settings, area: str, redis_db: int, home: Path, token: str) -> Settings:
    """`isolated_settings` for an API under test: a free port, an admin token,
    and its Redis db emptied."""
    settings = dataclasses.replace(
        free_api_ports(isolated_settings(base, area, redis_db, home)), api_admin_token=token
    )
    empty_redis_db(settings)
    return settings


def empty_redis_db(settings: Settings) -> None:
    """Empty `settings`' Redis db, and forget the prediction-log counts an
    earlier run's killed workers left for it (serve.prediction_counts)."""
    import redis

    from serve.prediction_counts import folder

    redis.Redis.from_url(settings.redis_url).flushdb()
    shutil.rmtree(folder(settings.run_dir, settings.redis_url), ignore_errors=True)


# Redis dbs are handed out in blocks of 16, one block per test run: run slot
# n uses dbs 16n .. 16n+15, and slot 0 (dbs 0-15) stays the user's.
# scripts/stack.sh configures `databases` for REDIS_SLOTS blocks.
REDIS_DBS_PER_RUN = 16
REDIS_SLOTS = 16


@dataclasses.dataclass
class TestRun:
    """One test session's share of the stack: a name prefix and a Redis block.

    Two `make test` runs on one stack must not meet: each gets a random run
    id in its database names and a slot, held with an exclusive lock on
    `<run dir>/test-runs/slot-<n>.lock` for the session. The kernel releases
    the lock when the process dies, so a killed run frees its slot.
    """

    __test__ = False  # not a test class, whatever its name says

    run_id: str
    slot: int
    lock: object = dataclasses.field(repr=False)

    @classmethod
    def claim(cls, run_dir: Path) -> TestRun:
        folder = run_dir / "test-runs"
        folder.mkdir(parents=True, exist_ok=True)
        for slot in range(1, REDIS_SLOTS):
            handle = (folder / f"slot-{slot}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return cls(run_id=secrets.token_hex(3), slot=slot, lock=handle)
        raise RuntimeError(
            f"all {REDIS_SLOTS - 1} test-run slots under {folder} are held by running suites"
        )

    def database(self, area: str) -> str:
        return f"vgsales_test_{self.run_id}_{area}"

    def redis_db(self, redis_db: int) -> int:
        if not 0 <= redis_db < REDIS_DBS_PER_RUN:
            raise ValueError(f"redis_db must be 0..{REDIS_DBS_PER_RUN - 1}, got {redis_db}")
        return self.slot * REDIS_DBS_PER_RUN + redis_db

    def release(self, base: Settings) -> list[str]:
        """Drop this run's databases, empty its Redis dbs, free the slot.

        Returns the dropped databases (dbt adds `_raw`, `_staging`, ... to each).
        """
        import pymysql
        import redis

        prefix = f"vgsales_test_{self.run_id}_".replace("_", "\\_")
        connection = pymysql.connect(
            host=base.mariadb_host, port=base.mariadb_port, user=base.mariadb_user,
            password=base.mariadb_password.get_secret_value(), charset="utf8mb4", autocommit=True,
        )
        with connection, connection.cursor() as cursor:
            cursor.execute(f"show databases like '{prefix}%'")
            dropped = [name for (name,) in cursor.fetchall()]
            for name in dropped:
                cursor.execute(f"drop database `{name}`")
        for redis_db in range(REDIS_DBS_PER_RUN):
            url = base.redis_url.rsplit("/", 1)[0] + f"/{self.redis_db(redis_db)}"
            with redis.Redis.from_url(url) as client:
                client.flushdb()
        self.lock.close()
        return dropped


_current: TestRun | None = None


def current_run(run_dir: Path) -> TestRun:
    """This session's `TestRun`, claimed on first use (tests/conftest.py releases it)."""
    global _current
    if _current is None:
        _current = TestRun.claim(run_dir)
    return _current


def isolated_settings(
    base: Settings, area: str, redis_db: int, home: Path, run: TestRun | None = None
) -> Settings:
    """Settings for one test area of this run: own database, Redis db, MLflow and
    Prefect home.

    `redis_db` (0-15) is the area's number inside the run's block of Redis dbs.
    """
    run = run or current_run(base.run_dir)
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{run.redis_db(redis_db)}"
    home.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(
        base,
        mariadb_database=run.database(area),
        redis_url=redis_url,
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "artifacts"),
        prefect_home=str(home / "prefect"),
    )


def create_landing_tables(settings: Settings, target: Path) -> None:
    """`settings`' database with the monitoring landing tables dbt declares,
    and nothing else (`settings` must name a raw file for dbt to stage)."""
    from ml.warehouse.dbt_runner import run_dbt

    server = pymysql.connect(
        host=settings.mariadb_host, port=settings.mariadb_port, user=settings.mariadb_user,
        password=settings.mariadb_password.get_secret_value(), autocommit=True,
    )
    try:
        with server.cursor() as cursor:
            cursor.execute(f"create database if not exists `{settings.mariadb_database}`")
    finally:
        server.close()
    made = run_dbt(["run-operation", "create_monitoring_landing_tables"], settings,
                   log=lambda line: None, target_path=target)
    assert made.ok, made.status_counts


# Every test run's base temp folder (tmp_path and friends) is its own, under
# this root: pytest's default numbered folders (/tmp/pytest-of-<user>/pytest-N)
# are pruned by whichever pytest session on the machine ends next, and one
# such cleanup removed a running suite's folders (its API's registry and
# gunicorn files) mid-run, failing 52 tests. Each run holds an flock on
# `<folder>.lock` for its life; folders of finished runs beyond the newest
# KEPT_RUNS are removed.
TEMP_ROOT = Path(tempfile.gettempdir()) / f"vgsales-tests-{os.getuid()}"
KEPT_RUNS = 3
_basetemp_lock = None


def private_basetemp() -> Path:
    """A new base temp folder for this process, locked while it lives."""
    global _basetemp_lock
    TEMP_ROOT.mkdir(mode=0o700, exist_ok=True)
    finished = []
    for lock_file in TEMP_ROOT.glob("run-*.lock"):
        with lock_file.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run
            finished.append(lock_file)
    for lock_file in sorted(finished)[:-KEPT_RUNS or None]:
        shutil.rmtree(lock_file.with_suffix(""), ignore_errors=True)
        lock_file.unlink(missing_ok=True)
    name = f"run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    _basetemp_lock = (TEMP_ROOT / f"{name}.lock").open("w")
    fcntl.flock(_basetemp_lock, fcntl.LOCK_EX)
    return TEMP_ROOT / name  # pytest creates it


def lost(settings: Settings, reason: str = "%") -> int:
    """Predictions the warehouse counts as lost by the log (for reasons like `reason`)."""
    import sqlalchemy as sa

    from ml.warehouse.engine import connect as warehouse_connect

    with warehouse_connect(settings, reader=False) as connection:
        return int(connection.execute(sa.text(
            "select coalesce(sum(predictions), 0) from "
            f"`{settings.raw_database}`.raw_prediction_log_losses where reason like :r"),
            {"r": reason}).scalar_one())
