"""Every part at once, as docs/scaling.md lays them out on several hosts: nginx
and two API instances serving champions from a registry server (`mlflow
server`, a process of its own as on another host), two Prefect process
workers on one pool, and a pipeline run and a drift check started together
while `/predict` is driven through nginx and one instance is killed (kill -9).

What it proves: the two flows run at the same time on different workers and
both complete, their writing dbt invocations on the shared database never
overlap (ml.warehouse.locks); no request fails while an instance dies and the
instance rejoins; and every prediction answered under all this lands in
`fct_predictions` or is counted as lost.

Its own database (a 3,000-row synthetic file), Redis db, run folders,
registry server (SQLite store: the store in MariaDB is
tests/integration/test_stack.py's) and work pool; the session's Prefect
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.load import drive
from flows.deploy import DRIFT_DEPLOYMENT, PIPELINE_DEPLOYMENT
from ml.data.synthetic import write_csv
from ml.monitoring import drift
from ml.monitoring.drain import drain
from ml.settings import ROOT, Settings
from ml.warehouse.dbt_runner import run_dbt
from ml.warehouse.mart import read_ml_mart, read_platforms, read_written_names
from ml.modeling.names import NameReference
from serve.edge import limits
from serve.edge.limits import instance_ports
from tests.api_server import (
    ADMIN_TOKEN, kill_instance, register_champions, start, stop, wait_every_worker_serving,
    wait_rejoined,
)
from tests.helpers import api_settings, free_port, lost
from tests.system.conftest import PrefectServer

pytestmark = pytest.mark.slow

REDIS_DB = 8
BASE_ROWS = 3000
LOAD_SECONDS = 20
KILL_AFTER_SECONDS = 5
CONNECTIONS = 4
FLOW_TIMEOUT_SECONDS = 900
POLL_SECONDS = 2
PIPELINE = f"vgsales-pipeline/{PIPELINE_DEPLOYMENT}"
DRIFT_CHECK = f"vgsales-drift-check/{DRIFT_DEPLOYMENT}"
# No scheduled run may reach the workers during the test (29 February).
NEVER = "0 0 29 2 *"
# The load's record, and the one the rejoin probes send: told apart in the warehouse.
LOAD = {"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.0,
        "EU_Sales": 0.5, "JP_Sales": 0.1, "Other_Sales": 0.1}
PROBE = {**LOAD, "Platform": "PS2"}


def say(started: float, what: str) -> None:
    print(f"[scale-out {time.monotonic() - started:6.1f} s] {what}", flush=True)


@contextlib.contextmanager
def registry_server(home: Path) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """`mlflow server` as scripts/stack.sh starts it (artifacts served through
    it), on a free port with a store of its own: its URL, process and log.
    The stack's own server holds the user's champions, which no test may move."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{home / 'registry.db'}",
           "MLFLOW_ARTIFACTS_DESTINATION": str(home / "served-artifacts")}
    log = home / "registry.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--serve-artifacts"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", process, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@contextlib.contextmanager
def prefect_server_of_its_own(home: Path) -> Iterator[PrefectServer]:
    """A Prefect server for this test alone, in the foreground with its output
    kept. The session's server (`--background`, which sends the server's
    output nowhere) vanished in the middle of this test in 2 of about 12
    runs, after the other tests' flow runs, and left no word of why."""
    port = free_port()
    auth = f"vgsales:{secrets.token_hex(16)}"
    server_home = home / "prefect-server"
    server_home.mkdir()
    server = PrefectServer(f"http://127.0.0.1:{port}/api", auth, server_home / "prefect.db")
    env = {**os.environ, **server.client_env(), "PREFECT_HOME": str(server_home),
           "PREFECT_SERVER_API_AUTH_STRING": auth,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    log = home / "prefect-server.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_answering(server.url, process, log)
        yield server
        # Gone before the test ended: its own words say why.
        assert process.poll() is None, log.read_text()[-5000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def wait_answering(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until the server of `process` answers `url`/health (the registry
    server starts while dbt builds)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@contextlib.contextmanager
def workers(pool: str, env: dict[str, str], home: Path) -> Iterator[dict[str, Path]]:
    """Process workers `a` and `b` on `pool`, one flow run each at a time; the
    file each writes its output to, by name."""
    logs = {name: home / f"worker-{name}.log" for name in ("a", "b")}
    processes = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool,
             "--name", name, "--limit", "1"],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        for name, log in logs.items()
    ]
    try:
        deadline = time.monotonic() + 120
        for process, log in zip(processes, logs.values()):
            while "started!" not in log.read_text():
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield logs
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


async def _run_together(url: str, auth: str, parameters: dict[str, dict]) -> dict[str, object]:
    """Start a run of each deployment at once; each finished flow run, by deployment."""
    import httpx
    from prefect.client.orchestration import PrefectClient
    from prefect.exceptions import PrefectHTTPStatusError

    async with PrefectClient(api=url, auth_string=auth) as client:
        deployments = {name: await client.read_deployment_by_name(name) for name in parameters}
        runs = await asyncio.gather(*(
            client.create_flow_run_from_deployment(d.id, parameters=parameters[name])
            for name, d in deployments.items()))
        deadline = time.monotonic() + FLOW_TIMEOUT_SECONDS
        while not all(run.state.is_final() for run in runs) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            try:
                runs = [await client.read_flow_run(run.id) for run in runs]
            except (PrefectHTTPStatusError, httpx.TransportError) as error:
                # The session's server keeps its state in SQLite, which two
                # flows' writes keep busy: a read may fail; the next one is read.
                print(f"[scale-out] reading the flow runs: {error}", flush=True)
        return dict(zip(parameters, runs))


def dbt_interval(target: Path) -> tuple[datetime, datetime]:
    """When the dbt invocation whose artifacts are in `target` started and
    ended its work on the warehouse (its nodes' first and last timing)."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    times = [datetime.fromisoformat(t[key].rstrip("Z"))
             for r in results for t in r["timing"] for key in ("started_at", "completed_at")]
    assert times, target
    return min(times), max(times)


class Background(threading.Thread):
    """`work()` in a thread; `result()` returns what it returned or raises what it raised."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work, self.outcome = work, None
        self.start()

    def run(self):
        try:
            self.outcome = (self.work(), None)
        except BaseException as error:  # raised in the test, not lost in the thread
            self.outcome = (None, error)

    def result(self, timeout: float):
        self.join(timeout=timeout)
        assert self.outcome is not None, f"still running after {timeout} s"
        value, error = self.outcome
        if error is not None:
            raise error
        return value


def scalar(settings: Settings, sql: str) -> int:
    engine = sa.create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql)).scalar_one() or 0)
    finally:
        engine.dispose()


def landed(settings: Settings, table: str, platform: str) -> int:
    """Rows of `/predict` answers for `platform` in `table` (raw_prediction_log
    keeps the request's fields as JSON, fct_predictions lifts them out)."""
    if table == "fct_predictions":
        return scalar(settings, f"select count(*) from `{settings.mariadb_database}`."
                      f"fct_predictions where endpoint = '/predict' and platform = '{platform}'")
    return scalar(settings, f"select count(*) from `{settings.raw_database}`.raw_prediction_log "
                  "where endpoint = '/predict' and "
                  f"json_value(features_json, '$.platform') = '{platform}'")


def test_flows_on_two_workers_beside_an_api_losing_an_instance(
    stack_settings, tmp_path_factory
):
    """One story rather than several tests: what it proves only holds while
    the flows, the load and the kill overlap, and its setup (a warehouse,
    champions, a registry server, an API, two workers) is most of its cost."""
    started = time.monotonic()
    home = tmp_path_factory.mktemp("scaleout")
    write_csv(home / "seeds" / "vgsales.csv", BASE_ROWS, seed=7)
    # A run folder of its own: dbt targets, the instances' files and
    # prediction counts of this test never meet the stack's.
    run_dir = home / "run"
    run_dir.mkdir()
    base = api_settings(stack_settings, "scaleout", REDIS_DB, home, ADMIN_TOKEN)
    pool = f"scaleout-{secrets.token_hex(3)}"
    with registry_server(home) as (registry_url, registry, registry_log), \
            prefect_server_of_its_own(home) as prefect_server:
        settings = dataclasses.replace(
            base, vgsales_seeds_dir=str(home / "seeds"), mlflow_tracking_uri=registry_url,
            run_dir=run_dir)
        env = {**os.environ, **settings.as_env(), **prefect_server.client_env(),
               "VGSALES_RUN_DIR": str(run_dir), "PYTHONPATH": str(ROOT),
               # Workers ask for runs every 2 s, not 10 (the flows' start is the wait).
               "PREFECT_WORKER_QUERY_SECONDS": "2"}
        # The flow runs fit test-sized models (tests/helpers.use_test_training).
        assert env["VGSALES_BOOSTING_ITERATIONS"] not in ("", "0")
        with workers(pool, env, home) as worker_logs:
            deploy = subprocess.Popen(
                [sys.executable, "-m", "flows.deploy", "--work-pool", pool,
                 "--pipeline-cron", NEVER, "--drift-cron", NEVER, "--drain-cron", NEVER],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            # The warehouse and champions a drift check needs, as an earlier
            # pipeline run would have left them.
            built = run_dbt(["build", "--no-use-colors"], settings, log=lambda line: None,
                            target_path=home / "base-target")
            assert built.ok, built.status_counts
            deployed = deploy.communicate(timeout=300)[0]
            assert deploy.returncode == 0, deployed
            wait_answering(registry_url, registry, registry_log)
            say(started, "warehouse built, registry server up, workers polling")
            register_champions(
                settings, read_ml_mart(settings), platforms=read_platforms(settings),
                names=NameReference.from_frame(read_written_names(settings)))
            api_log = home / "api.log"
            api = start(settings, api_log, env={"VGSALES_RUN_DIR": str(run_dir)})
            try:
                # The flows start while the instances load their models: a
                # flow run needs some 15 s to reach its first task.
                flows = Background(lambda: asyncio.run(_run_together(
                    prefect_server.url, prefect_server.auth, {
                        PIPELINE: {},
                        DRIFT_CHECK: {"reports_dir": str(home / "drift-reports")},
                    })))
                wait_every_worker_serving(settings, api, api_log)
                say(started, "flows started, API serving; starting the load")
                driver = Background(lambda: drive(
                    settings.api_port, "/predict", json.dumps(LOAD).encode(), LOAD_SECONDS,
                    CONNECTIONS))
                time.sleep(KILL_AFTER_SECONDS)
                port = instance_ports(settings)[0]
                killed = kill_instance(settings, port)
                killed_at = time.monotonic()
                run = driver.result(timeout=LOAD_SECONDS + 60)
                say(started, f"load: {run.answered_2xx} answered 2xx, {run.non_2xx} other, "
                    f"{run.socket_errors} socket errors")
                # No request fails but an answer the kill cut in the middle:
                # nginx had its head and no body, and an answer nginx has begun
                # cannot go to another instance (docs/faults_and_security.md).
                # Each such cut is one line of nginx's ("... while reading
                # upstream"; a request retried elsewhere is logged "while
                # reading response header from upstream"), at most one per
                # thread of the killed instance.
                cut = len(re.findall(r"while reading upstream,", api_log.read_text()))
                assert run.non_2xx == 0
                assert run.socket_errors == cut <= len(killed[:-1]) * limits.THREADS, (
                    run.socket_errors, cut)
                assert run.answered_2xx > 0
                wait_rejoined(settings, port, killed, PROBE,
                              timeout=limits.FAILED_INSTANCE_SECONDS + 120)
                rejoined = time.monotonic() - killed_at
                say(started, f"the killed instance rejoined {rejoined:.0f} s after the kill")
                runs = flows.result(timeout=FLOW_TIMEOUT_SECONDS + 60)
                for name, flow_run in runs.items():
                    say(started, f"{name}: {flow_run.state.type.value}, "
                        f"{(flow_run.end_time - flow_run.start_time).total_seconds():.0f} s")
                # Each worker's output has its flow runs' logs, subflows included.
                outputs = {name: log.read_text() for name, log in worker_logs.items()}
                for name, flow_run in runs.items():
                    assert flow_run.state.is_completed(), (
                        name, flow_run.state, *(text[-4000:] for text in outputs.values()))

                # Together, on different workers.
                pipeline, check = runs[PIPELINE], runs[DRIFT_CHECK]
                assert pipeline.start_time < check.end_time and check.start_time < pipeline.end_time
                taken = {name: set(re.findall(r"submitting flow run '([0-9a-f-]+)'", text))
                         for name, text in outputs.items()}
                assert sorted(map(len, taken.values())) == [1, 1], taken
                assert taken["a"] | taken["b"] == {str(pipeline.id), str(check.id)}, taken

                # The writing dbt invocations on the shared database took turns.
                build = dbt_interval(run_dir / "dbt" / settings.mariadb_database)
                monitoring = dbt_interval(drift.target_path(settings))
                assert build[1] <= monitoring[0] or monitoring[1] <= build[0], (build, monitoring)
                # When one waited for the other's build lock (timing decides), its
                # flow run's log says so, not only dbt's output file.
                waits = [line for log in (run_dir / "dbt").glob("*/dbt_output.log")
                         for line in log.read_text().splitlines() if "lock '" in line]
                said = "".join(outputs.values())
                assert [line for line in waits if line not in said] == []
                say(started, f"lock lines: {waits or 'none (the builds did not meet)'}")

                # Every prediction answered is a row or counted, even the killed
                # instance's (its workers' counts are adopted by the others).
                answered = run.answered_2xx
                rows = counted = 0
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    drain(settings, log=lambda line: None)
                    rows, counted = landed(settings, "raw_prediction_log", "Wii"), lost(settings)
                    if rows + counted >= answered:
                        break
                    time.sleep(1)
                time.sleep(3)  # and nothing more arrives
                drain(settings, log=lambda line: None)
            finally:
                stop(api)
    built = run_dbt(["run", "--select", "stg_monitoring__prediction_log", "fct_predictions",
                     "--no-use-colors"], settings, log=lambda line: None,
                    target_path=home / "last-target")
    assert built.ok, built.status_counts
    rows = landed(settings, "fct_predictions", "Wii")
    assert rows == landed(settings, "raw_prediction_log", "Wii")
    assert landed(settings, "fct_predictions", "PS2") > 0  # the rejoin probes
    worker_lost = lost(settings, "worker_lost")
    in_flight = lost(settings, "worker_in_flight")
    say(started, f"{answered} answered, {rows} rows in fct_predictions, "
        f"{worker_lost} counted worker_lost, {in_flight} worker_in_flight")
    assert lost(settings) == worker_lost + in_flight  # nothing else dropped
    assert rows + worker_lost + in_flight >= answered
    # More only by requests in flight when the instance died (recorded, then
    # answered again by the other instance after nginx's retry) or when the
    # load stopped (answered after wrk stopped counting).
    assert rows + worker_lost - answered <= 2 * CONNECTIONS
