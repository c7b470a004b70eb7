"""The API every system test of it shares: one per session, as `make serve`
runs it (nginx in front of API_INSTANCES gunicorn instances), serving
champions trained on the mart dbt builds from the real file.

Tests may reload it or register versions, but leave it serving version 1 of
both models, as they found it (the golden answers name those versions).

Also shared: one local Prefect server for the flow runs of the system tests.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
from pathlib import Path

import pytest
import redis

from ml.settings import ROOT
from serve.edge.limits import instance_ports
from tests.api_server import (
    ADMIN_TOKEN,
    Server,
    register_champions,
    start,
    stop,
    wait_every_worker_serving,
)
from tests.helpers import free_api_ports, free_port, isolated_settings

REDIS_DB = 5


@pytest.fixture(scope="session")
def server(stack_settings, built_mart, built_platforms, built_names, tmp_path_factory) -> Server:
    """`python -m serve` over a private registry whose champions (version 1 of
    each model) were trained on `built_mart`. Its own database is never
    built: the forecast model's history comes from the Redis snapshot."""
    home = tmp_path_factory.mktemp("serve")
    settings = dataclasses.replace(
        free_api_ports(isolated_settings(stack_settings, "serve", REDIS_DB, home)),
        api_admin_token=ADMIN_TOKEN,
    )
    redis.Redis.from_url(settings.redis_url).flushdb()
    register_champions(settings, built_mart, platforms=built_platforms, names=built_names)
    log = home / "gunicorn.log"
    process = start(settings, log)
    try:
        wait_every_worker_serving(settings, process, log)
        yield Server(settings.api_port, settings, built_mart, process, log)
    finally:
        stop(process)
    # Each master removes its instance directory (champions file, metrics) on exit.
    for port in instance_ports(settings):
        assert not (settings.run_dir / "serve" / str(port)).exists()


@dataclasses.dataclass
class PrefectServer:
    url: str
    auth: str
    database: Path  # the server's SQLite store, for reading flow runs back

    def client_env(self) -> dict[str, str]:
        """What a flow process needs in its environment to run on this server."""
        return {"PREFECT_API_URL": self.url, "PREFECT_API_AUTH_STRING": self.auth}


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> PrefectServer:
    """One Prefect server (scripts/prefect_server.sh: temp home, free port,
    its own auth string) for the flow runs of test_flow, test_monitoring and
    test_faults. In ephemeral mode each `python -m flows...` process starts a
    server of its own, 8-14 s on a quiet machine and over 15 s on a busy one;
    test_data_refresh keeps that mode covered, as `make pipeline` runs it."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    auth = f"vgsales:{secrets.token_hex(16)}"
    env = {**os.environ, "PREFECT_SERVER_HOME": str(home), "PREFECT_SERVER_PORT": str(port),
           "PREFECT_API_AUTH_STRING": auth}
    script = str(ROOT / "scripts" / "prefect_server.sh")
    started = subprocess.run([script, "up"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert started.returncode == 0, started.stderr
    try:
        yield PrefectServer(f"http://127.0.0.1:{port}/api", auth, home / "prefect.db")
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
