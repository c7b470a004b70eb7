"""Small helpers shared by the tests."""

from __future__ import annotations

import dataclasses
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymysql

from ml.settings import ROOT, Settings


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    import redis

    settings = dataclasses.replace(
        isolated_settings(base, area, redis_db, home), api_port=free_port(), api_admin_token=token
    )
    redis.Redis.from_url(settings.redis_url).flushdb()
    return settings


def isolated_settings(base: Settings, area: str, redis_db: int, home: Path) -> Settings:
    """Settings for one test area: own database, Redis db, MLflow and Prefect home."""
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    home.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(
        base,
        mariadb_database=f"vgsales_test_{area}",
        redis_url=redis_url,
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "artifacts"),
        prefect_home=str(home / "prefect"),
    )


def start_api(settings: Settings, log: Path) -> subprocess.Popen:
    """`python -m serve` on `settings.api_port`, every setting in its
    environment (as `make serve` starts it), its output in `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "serve", "--port", str(settings.api_port)],
        cwd=ROOT, env={**os.environ, **settings.as_env()},
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def wait_every_worker_serves(port: int, process: subprocess.Popen, log: Path,
                             timeout: float = 180) -> None:
    """Until every gunicorn worker serves both models (one /ready only speaks
    for one worker; /metrics has a served-version line per live worker)."""
    from serve import gunicorn_conf

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-5000:]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        except OSError:
            text = ""
        finally:
            connection.close()
        pids = re.findall(r'vgsales_model_version\{model="prerelease",pid="(\d+)"\}', text)
        if len(set(pids)) == gunicorn_conf.workers:
            return
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout} s:\n{log.read_text()[-5000:]}")
