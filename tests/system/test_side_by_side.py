"""Two checkouts of the project on one machine, as a newcomer would run them.

The first is this checkout: the session's stack and an API (nginx in front
of its gunicorn instances) serving champions from a private registry. The second is a `git clone` of
HEAD in a temporary directory, sharing the venv through a symlink and
starting its own stack. Each collision a second checkout can cause (the
MariaDB, Redis, API and API instance ports of the first) is refused before
anything starts,
with the variable to change named; afterwards both stacks run and the first
API still answers `/ready` and `/admin/reload` with its files intact.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys

import pytest
import redis

from tests.api_server import register_champions, wait_every_worker_serving
from ml.settings import EXPORTED, ROOT, load_settings
from serve.edge.limits import instance_ports
from tests.helpers import api_settings, free_port

pytestmark = pytest.mark.slow

REDIS_DB = 11
TOKEN = "side-by-side-token"
SAMPLE_ROWS = 800
# The port variables, as scripts/ports.sh defines them.
PORT_NAMES = subprocess.run(
    ["bash", "-c", '. scripts/ports.sh && echo "${PORT_NAMES[@]}"'],
    cwd=ROOT, capture_output=True, text=True, check=True,
).stdout.split()


def call(port: int, method: str, path: str, token: str = "") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def first(stack_settings, built_mart, tmp_path_factory):
    """This checkout's API, serving, with its instance directories under .run/serve/."""
    home = tmp_path_factory.mktemp("first")
    settings = api_settings(stack_settings, "sidebyside", REDIS_DB, home, TOKEN)
    register_champions(settings, built_mart.sample(SAMPLE_ROWS, random_state=3).sort_values("release_id"))
    log = home / "gunicorn.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "serve"], cwd=ROOT,
        env={**os.environ, **settings.as_env()},
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        wait_every_worker_serving(settings, process, log)
        yield settings
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    """A clone of HEAD with the venv linked in: `run(*cmd, **env)` runs in it."""
    checkout = tmp_path_factory.mktemp("second") / "vgsales"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    # Nothing of the first checkout's settings may leak into the second.
    base = {k: v for k, v in os.environ.items()
            if k not in (*EXPORTED, *PORT_NAMES, "VGSALES_RUN_DIR", "PYTHONPATH")}

    def run(*command: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), cwd=checkout, env={**base, **env},
                              capture_output=True, text=True, timeout=300)

    yield checkout, run
    run("scripts/stack.sh", "down")


def assert_first_intact(first) -> None:
    for port in instance_ports(first):
        instance = first.run_dir / "serve" / str(port)
        assert (instance / "champions.json").is_file(), sorted(instance.glob("*"))
    status, body = call(first.api_port, "GET", "/ready")
    assert status == 200, body
    status, body = call(first.api_port, "POST", "/admin/reload", TOKEN)
    assert status == 200, body


def test_two_checkouts_side_by_side(first, second):
    checkout, run = second
    mariadb_port, redis_port, mlflow_port = free_port(), free_port(), free_port()

    # The first's MariaDB port: refused by name, nothing started.
    clash = run("scripts/stack.sh", "up", MARIADB_PORT=str(first.mariadb_port),
                REDIS_PORT=str(redis_port), MLFLOW_PORT=str(mlflow_port))
    assert clash.returncode == 1
    assert "MARIADB_PORT=<port>" in clash.stderr and str(first.mariadb_port) in clash.stderr
    assert not (checkout / ".run" / "mariadb").exists(), clash.stderr
    assert not (checkout / ".run" / "redis").exists(), clash.stderr

    # The first's Redis port (its Redis answers NOAUTH to the second's password).
    redis_first = int(first.redis_url.rsplit(":", 1)[1].split("/")[0])
    clash = run("scripts/stack.sh", "up", MARIADB_PORT=str(mariadb_port),
                REDIS_PORT=str(redis_first), MLFLOW_PORT=str(mlflow_port))
    assert clash.returncode == 1
    assert "REDIS_PORT=<port>" in clash.stderr and "MARIADB_PORT" not in clash.stderr
    assert not (checkout / ".run" / "mariadb").exists(), clash.stderr

    # Free ports from the environment override what the failed runs recorded,
    # and are recorded for later commands that do not set them.
    api_port = free_port()
    started = run("scripts/stack.sh", "up", MARIADB_PORT=str(mariadb_port),
                  REDIS_PORT=str(redis_port), API_PORT=str(api_port),
                  MLFLOW_PORT=str(mlflow_port))
    assert started.returncode == 0, started.stderr
    recorded = load_settings(environ={"VGSALES_RUN_DIR": str(checkout / ".run")})
    assert (recorded.mariadb_port, recorded.api_port) == (mariadb_port, api_port)
    assert f"127.0.0.1:{redis_port}/" in recorded.redis_url
    again = run("scripts/stack.sh", "up")
    assert again.returncode == 0 and "already running" in again.stderr, again.stderr
    ports = run("scripts/ports.sh")
    assert f"MARIADB_PORT={mariadb_port}\n" in ports.stdout
    assert f"API_PORT={api_port}\n" in ports.stdout
    assert f"MLFLOW_PORT={mlflow_port}\n" in ports.stdout

    # The second's API on the first's port: refused by name, the first unharmed.
    clash = run("scripts/with-env", "python", "-m", "serve", API_PORT=str(first.api_port))
    assert clash.returncode != 0
    assert "API_PORT=<port>" in clash.stderr and str(first.api_port) in clash.stderr
    assert clash.stderr.count("Connection in use") == 0
    assert_first_intact(first)

    # Its API on a free port but the first's instance ports: refused by name.
    clash = run("scripts/with-env", "python", "-m", "serve", API_PORT=str(free_port()),
                API_INSTANCE_PORT=str(first.api_instance_port))
    assert clash.returncode != 0
    assert "API_INSTANCE_PORT=<port>" in clash.stderr, clash.stderr
    assert str(first.api_instance_port) in clash.stderr
    assert_first_intact(first)

    # A second `make serve` in the first checkout on its own port: same.
    again = subprocess.run(
        [sys.executable, "-m", "serve"], cwd=ROOT, env={**os.environ, **first.as_env()},
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode != 0 and "API_PORT=<port>" in again.stderr
    assert_first_intact(first)

    # Both stacks still answer.
    status = run("scripts/stack.sh", "status")
    assert status.returncode == 0, status.stdout
    assert f"127.0.0.1:{mariadb_port}" in status.stdout
    with redis.Redis.from_url(recorded.redis_url) as second_redis:
        assert second_redis.ping()
    with redis.Redis.from_url(first.redis_url) as first_redis:
        assert first_redis.ping()
