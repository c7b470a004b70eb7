"""`make deploy` for real: a local Prefect server started by
scripts/prefect_server.sh (its own home and port in a temp folder), the
deployments created by `python -m flows.deploy`, and their schedules read back
through the Prefect client. The server is started once for the module (about
15 s) and stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from ml.settings import ROOT, load_settings
from tests.helpers import free_port, isolated_settings

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "prefect_server.sh"


def server_script(env: dict, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect_server")
    port = free_port()
    env = {**os.environ, "PREFECT_SERVER_HOME": str(home), "PREFECT_SERVER_PORT": str(port)}
    # A pid file left by a killed server, naming a process that is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (home / "server.pid").write_text(str(dead.pid))
    started = server_script(env, "up")
    assert started.returncode == 0, started.stderr
    yield dict(env=env, home=home, port=port, url=f"http://127.0.0.1:{port}/api",
               started=started.stderr)
    stopped = server_script(env, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert not (home / "server.pid").exists()
    assert "stopped" in server_script(env, "status").stdout


def deploy(server, tmp_path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    settings = isolated_settings(load_settings(), "deploy", 0, tmp_path)
    env = {**os.environ, **settings.as_env(), "PREFECT_API_URL": server["url"], **environ}
    done = subprocess.run(
        [sys.executable, "-m", "flows.deploy", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


async def _read(url: str):
    from prefect.client.orchestration import PrefectClient

    from prefect.settings import PREFECT_API_AUTH_STRING

    # The server asks for the stack's auth string (scripts/prefect_server.sh).
    async with PrefectClient(api=url, auth_string=PREFECT_API_AUTH_STRING.value()) as client:
        deployments = await client.read_deployments()
        pool = await client.read_work_pool("vgsales")
        return deployments, pool


def read_back(server):
    deployments, pool = asyncio.run(_read(server["url"]))
    return {
        d.name: dict(
            entrypoint=d.entrypoint,
            pool=d.work_pool_name,
            schedules=[(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules],
            runs_at_once=(d.global_concurrency_limit.limit if d.global_concurrency_limit
                          else d.concurrency_limit),
        )
        for d in deployments
    }, pool


def test_server_recovers_a_stale_pid_file_and_up_is_idempotent(server):
    assert "removing stale pid file" in server["started"]
    assert "ready on" in server["started"]
    again = server_script(server["env"], "up")
    assert again.returncode == 0 and "already running" in again.stderr
    status = server_script(server["env"], "status")
    assert f"running on {server['url']}" in status.stdout
    assert (server["home"] / "prefect.db").exists()  # SQLite in its own home


def test_another_checkouts_server_is_never_adopted(server, tmp_path):
    """A second checkout (own home) asking for the same port, even with the
    first's pid file copied in, is refused by name; it starts nothing."""
    other = {**server["env"], "PREFECT_SERVER_HOME": str(tmp_path)}
    (tmp_path / "server.pid").write_text((server["home"] / "server.pid").read_text())
    refused = server_script(other, "up")
    assert refused.returncode == 1, refused.stderr
    assert "PREFECT_SERVER_PORT=<port>" in refused.stderr
    assert "already running" not in refused.stderr
    assert not (tmp_path / "server.pid").exists()
    assert "stopped" in server_script(other, "status").stdout
    # Our own server asked for on another port: says where it runs.
    moved = server_script({**server["env"], "PREFECT_SERVER_PORT": str(free_port())}, "up")
    assert moved.returncode == 1
    assert f"runs on port {server['port']}" in moved.stderr
    assert server_script(server["env"], "up").returncode == 0


def test_deploy_creates_the_scheduled_deployments(server, tmp_path):
    done = deploy(server, tmp_path)
    assert "vgsales-pipeline/every-four-months" in done.stdout
    deployments, pool = read_back(server)
    assert deployments == {
        "every-four-months": dict(
            entrypoint="flows.pipeline.flow.vgsales_pipeline",
            pool="vgsales",
            schedules=[("0 6 1 */4 *", "UTC", True)],
            runs_at_once=1,
        ),
        "daily": dict(
            entrypoint="flows.drift_check.flow.drift_check",
            pool="vgsales",
            schedules=[("0 7 * * *", "UTC", True)],
            runs_at_once=1,
        ),
        "hourly": dict(
            entrypoint="flows.drift_check.flow.prediction_drain",
            pool="vgsales",
            schedules=[("15 * * * *", "UTC", True)],
            runs_at_once=1,
        ),
    }
    # One run per deployment, all three at once (warehouse locks order them).
    assert pool.type == "process" and pool.concurrency_limit == 3


def test_deploying_again_updates_the_schedules_in_place(server, tmp_path):
    deploy(server, tmp_path, "--pipeline-cron", "0 5 1 1,5,9 *", "--drift-cron", "30 6 * * *")
    deployments, _ = read_back(server)
    assert deployments["every-four-months"]["schedules"] == [("0 5 1 1,5,9 *", "UTC", True)]
    assert deployments["daily"]["schedules"] == [("30 6 * * *", "UTC", True)]


def test_the_crons_come_from_the_environment_and_the_list_shows_them(server, tmp_path):
    """PIPELINE_CRON and friends override flows/deploy.py's crons (make deploy
    passes the environment on); `--list` (make deployments) shows every
    deployment with its schedule and the runs the server has scheduled."""
    deploy(server, tmp_path, DRAIN_CRON="45 * * * *")
    deployments, _ = read_back(server)
    assert deployments["hourly"]["schedules"] == [("45 * * * *", "UTC", True)]
    listed = deploy(server, tmp_path, "--list").stdout.splitlines()
    drain = next(line for line in listed if line.startswith("vgsales-prediction-drain/hourly:"))
    assert "45 * * * * (UTC)" in drain, drain
    assert any(line.startswith("vgsales-pipeline/every-four-months: ") for line in listed), listed
    assert any(line.startswith("vgsales-drift-check/daily: ") for line in listed), listed
    assert f"UI is at {server['url'].removesuffix('/api')}" in listed[-1]


def test_deploy_without_a_server_says_how_to_start_one(tmp_path):
    settings = isolated_settings(load_settings(), "deploy", 0, tmp_path)
    env = {**os.environ, **settings.as_env()}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "flows.deploy"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert "scripts/prefect_server.sh up" in done.stderr
