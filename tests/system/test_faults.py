"""Faults, with real processes: hostile CSVs, services dying under the pipeline.

Hostile CSVs (shared stack, the run's `faults` database): each file is
either loaded correctly or refused with a message naming the problem, and a
refused or failed load leaves the raw table exactly as it was. Files are
checked by `ml.data.csv_check` (what the pipeline runs before dbt) and, where dbt
would see them, seeded with `dbt seed` for real. The 1,000,000-row file is
bench/bench_seed.py's large file (too slow for the suite).

Services (a private stack: own MariaDB and Redis under a temporary run dir,
so killing them cannot disturb other tests), on a 2,000-row synthetic file,
three runs of `python -m flows.pipeline`:

1. killed (SIGKILL to its process group) as dbt starts building the marts;
2. rerun in full while Redis is killed during its dbt build: completes on the
   degraded path, and the warehouse equals an uninterrupted `dbt build` of
   the same file (database vgsales_ref), with no duplicate rows;
3. rerun with --skip-dbt while MariaDB is down (killed); MariaDB is restarted
   when the snapshot task announces its first retry: the task succeeds on a
   retry, the flow completes, and no model version is registered twice.

MariaDB is down from the start of run 3 rather than killed at a chosen
moment inside it: the task reaches MariaDB within milliseconds of the flow
starting, so a kill from outside would race it. Then a real gunicorn serves
the champions while Redis is killed under load: every request is answered.
(Reload under load and the in-process Redis outage: tests/system/test_serve.py.)
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient

from ml.data.csv_check import CsvRefused, check_raw_csv
from ml.data.synthetic import write_csv
from ml.features import MODEL_NAMES
from ml.settings import ROOT, Settings
from ml.warehouse.dbt_runner import dbt_environment, run_dbt
from ml.warehouse.identifiers import quoted
from tests.api_server import instance_metrics, wait_every_worker_serving
from tests.helpers import connect, free_api_ports, free_port, isolated_settings, kill_pid_file

pytestmark = pytest.mark.slow

FLOW_TIMEOUT_SECONDS = 900
FLOW_ROWS = 2000


def raw_rows(settings: Settings) -> list[tuple]:
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute(f"select * from {quoted(settings.raw_database, 'raw_vgsales')}")
        return sorted(cursor.fetchall(), key=repr)


# -- hostile CSVs -------------------------------------------------------------------------

GOOD_ROWS = 40
BATCH_ROWS = 8  # the bad value below sits in the fifth batch


def hostile_files(good: list[str]) -> dict[str, bytes]:
    """The hostile variants of a good file's lines (header first)."""
    header, *rows = good
    lf = lambda lines: ("\n".join(lines) + "\n").encode()  # noqa: E731
    bad_rank = rows[:]
    bad_rank[36] = "x" + bad_rank[36][bad_rank[36].index(",") :]
    extra = rows[:]
    extra[4] += ",surplus"
    crlf_rows = [
        '901,"Hey, You\r\nPikachu!",N64,1998,Simulation,Nintendo,0.83,0.06,0.93,0,1.83',
        '902,"Say ""hi"", then go",PS2,2001,Action,Sony,1,0,0,0,1',
        "903,Short Row,GB",
        *rows[:5],
    ]
    return {
        "bad_value_midway": lf([header, *bad_rank]),
        "wrong_header": lf([header.replace("Name", "Title"), *rows]),
        "header_only": lf([header]),
        "not_utf8": lf([header, *rows[:3]]) + "904,Pok\u00e9mon,GB,1996,Role-Playing,Nintendo,1,1,1,1,4\n".encode("latin-1"),
        "extra_column": lf([header, *extra]),
        "empty": b"",
        "truncated_last_line": lf([header, *rows])[:-25],
        "truncated_in_quotes": lf([header, *rows[:5]]) + b'905,"Unfinished name',
        "blank_line": lf([header, *rows[:5], "", *rows[5:10]]),
        "bom_crlf_quoted": codecs.BOM_UTF8 + ("\r\n".join([header, *crlf_rows]) + "\r\n").encode(),
    }


# What the check says about each file (a substring), None when it accepts it.
CHECK_REFUSES = {
    "bad_value_midway": None,  # the values are the database's to refuse
    "wrong_header": "missing Name; unexpected Title",
    "header_only": "has a header but no rows",
    "not_utf8": "line 5, character 8: byte 0xE9 is not UTF-8",
    "extra_column": "line 6 has 12 fields, the header has 11",
    "empty": "the file is empty",
    "truncated_last_line": "the file looks truncated",
    "truncated_in_quotes": "line 7: a quoted field is still open at the end of the file",
    "blank_line": "line 7 is empty",
    "bom_crlf_quoted": None,
}
# What `dbt seed` says when it refuses a file (it is not run on the files agate
# would load wrongly: the check above is what stops those).
DBT_REFUSES = {
    "bad_value_midway": "Incorrect integer value: 'x' for column",
    "wrong_header": "(missing: Name; unexpected: Title)",
    "header_only": "has a header but no rows",
    "not_utf8": "codec can't decode byte 0xe9",
    "extra_column": "has 12 values, but Table only has 11 columns",
    "empty": "StopIteration",
}


@pytest.fixture(scope="module")
def hostile(stack_settings, tmp_path_factory):
    """Every hostile file, checked; the dbt ones seeded over a good raw table."""
    home = tmp_path_factory.mktemp("hostile")
    good = write_csv(home / "good.csv", GOOD_ROWS, seed=3, dirty_share=0)
    base = isolated_settings(stack_settings, "faults", redis_db=10, home=home)
    with connect(base) as connection, connection.cursor() as cursor:
        cursor.execute(f"drop database if exists {quoted(base.raw_database)}")

    def seed(name: str, content: bytes, *flags: str) -> tuple[int, str, list[tuple]]:
        folder = home / name
        folder.mkdir(exist_ok=True)
        (folder / "vgsales.csv").write_bytes(content)
        settings = dataclasses.replace(base, vgsales_seeds_dir=str(folder))
        env = {**os.environ, **dbt_environment(settings)}
        args = [sys.executable, "-m", "dbt.cli.main", "seed", "--no-use-colors", *flags,
                "--select", "vgsales.vgsales", "--target-path", str(folder / "target"),
                "--vars", json.dumps({"seed_batch_rows": BATCH_ROWS})]
        done = subprocess.run(args, cwd=settings.dbt_project_dir, env=env,
                              capture_output=True, text=True)
        return done.returncode, done.stdout + done.stderr, raw_rows(settings)

    code, output, baseline = seed("good", good.read_bytes(), "--full-refresh")
    assert code == 0 and len(baseline) == GOOD_ROWS, output[-3000:]
    files = hostile_files(good.read_text().splitlines())
    outcomes = {}
    for name, content in files.items():
        path = home / f"{name}.csv"
        path.write_bytes(content)
        try:
            check = check_raw_csv(path)
        except CsvRefused as refusal:
            check = refusal
        outcomes[name] = {"check": check}
    for name in DBT_REFUSES:
        outcomes[name]["dbt"] = seed(name, files[name])
    # The same midway failure where dbt would drop and recreate the table.
    outcomes["bad_value_midway"]["dbt_full_refresh"] = seed(
        "bad_value_midway_fr", files["bad_value_midway"], "--full-refresh")
    with connect(base) as connection, connection.cursor() as cursor:
        cursor.execute(f"show tables from {quoted(base.raw_database)}")
        leftovers_after_failures = {row[0] for row in cursor.fetchall()}
    outcomes["bom_crlf_quoted"]["dbt"] = seed("bom_crlf_quoted", files["bom_crlf_quoted"])
    with connect(base) as connection, connection.cursor() as cursor:
        cursor.execute(f"show tables from {quoted(base.raw_database)}")
        tables_after_success = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            f"select file_rows, loaded_rows from {quoted(base.raw_database, 'seed_load_audit')}"
        )
        audit = cursor.fetchall()
    return {
        "baseline": baseline, "outcomes": outcomes, "audit": audit,
        "leftovers": leftovers_after_failures, "tables": tables_after_success,
    }


@pytest.mark.parametrize("name", list(CHECK_REFUSES))
def test_check_refuses_with_the_line_or_accepts(hostile, name):
    check = hostile["outcomes"][name]["check"]
    expected = CHECK_REFUSES[name]
    if expected is None:
        assert not isinstance(check, CsvRefused), check
    else:
        assert isinstance(check, CsvRefused), f"{name} was accepted: {check}"
        assert expected in str(check) and f"{name}.csv" in str(check)


@pytest.mark.parametrize("name", list(DBT_REFUSES))
def test_refused_seed_leaves_the_raw_table_as_it_was(hostile, name):
    code, output, rows = hostile["outcomes"][name]["dbt"]
    assert code != 0, output[-2000:]
    assert DBT_REFUSES[name] in output, output[-3000:]
    assert rows == hostile["baseline"]


def test_failure_midway_with_full_refresh_keeps_the_table_too(hostile):
    code, output, rows = hostile["outcomes"]["bad_value_midway"]["dbt_full_refresh"]
    assert code != 0 and DBT_REFUSES["bad_value_midway"] in output
    assert rows == hostile["baseline"]
    # The half-loaded replacement stays aside until the next load drops it.
    assert "raw_vgsales__dbt_new" in hostile["leftovers"]
    assert "raw_vgsales__dbt_new" not in hostile["tables"]
    assert "raw_vgsales__dbt_old" not in hostile["tables"] | hostile["leftovers"]


def test_bom_crlf_and_quoted_fields_load_correctly(hostile):
    facts = hostile["outcomes"]["bom_crlf_quoted"]["check"]
    assert (facts.bom, facts.line_ending, facts.rows, facts.short_rows) == (True, "CRLF", 8, 1)
    code, output, rows = hostile["outcomes"]["bom_crlf_quoted"]["dbt"]
    assert code == 0, output[-3000:]
    by_rank = {row[0]: row for row in rows}
    assert len(rows) == 8 and 901 in by_rank  # the BOM did not stick to `Rank`
    # A line break inside quotes is a line break (agate reads CRLF as LF).
    assert by_rank[901][1] == "Hey, You\nPikachu!"
    assert by_rank[902][1] == 'Say "hi", then go'
    assert by_rank[903][1:4] == ("Short Row", "GB", None)
    # Only successful loads are audited, each complete.
    assert hostile["audit"] and all(f == loaded for f, loaded in hostile["audit"])
    assert len(hostile["audit"]) == 2


# -- services dying under the pipeline ---------------------------------------------------


@dataclasses.dataclass
class FlowRun:
    returncode: int
    output: str
    report: dict | None
    events: list[str]


def run_flow(settings: Settings, run_dir: Path, prefect, report: Path, *args: str,
             on_line=None) -> FlowRun:
    """`python -m flows.pipeline` in its own process group, its output read
    line by line; `on_line(line, process, events)` injects the faults. On the
    session's Prefect server (tests/system/conftest.py), which no fault here
    touches, rather than an ephemeral one started per run."""
    env = {**os.environ, **settings.as_env(), "VGSALES_RUN_DIR": str(run_dir),
           "PYTHONUNBUFFERED": "1", **prefect.client_env(),
           # The faults are injected at dbt's own lines (START, Running with dbt).
           "VGSALES_DBT_OUTPUT": "all"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.pipeline", "--report", str(report), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(FLOW_TIMEOUT_SECONDS, kill_group, (process,))
    watchdog.start()
    lines: list[str] = []
    events: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line, process, events)
    finally:
        watchdog.cancel()
    code = process.wait()
    data = json.loads(report.read_text()) if report.exists() else None
    return FlowRun(code, "".join(lines), data, events)


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


COMPARED_SCHEMAS = ("", "_staging", "_intermediate", "_raw")
# Written by the flows (landing tables) or recording when: not the data.
NOT_COMPARED = {"seed_load_audit", "raw_model_champions", "raw_model_versions",
                "raw_prediction_log", "raw_training_reference"}
# Which load a history row came from (an invocation id and its time).
LOAD_COLUMNS = {"load_id", "loaded_at"}


def warehouse_digest(settings: Settings, database: str) -> dict[str, tuple[int, str]]:
    """(rows, SHA-256 of the sorted rows) of every dbt relation of `database`."""
    digests = {}
    with connect(settings) as connection, connection.cursor() as cursor:
        for suffix in COMPARED_SCHEMAS:
            schema = database + suffix
            cursor.execute(
                "select table_name, group_concat(column_name order by ordinal_position)"
                " from information_schema.columns where table_schema = %s group by 1",
                (schema,),
            )
            for table, column_list in cursor.fetchall():
                if table in NOT_COMPARED:
                    continue
                columns = [c for c in column_list.split(",") if c not in LOAD_COLUMNS]
                cursor.execute(
                    f"select {', '.join(quoted(c) for c in columns)} from {quoted(schema, table)}"
                )
                rows = sorted(repr(row) for row in cursor.fetchall())
                digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
                digests[f"{suffix or 'marts'}.{table}"] = (len(rows), digest)
    return digests


@pytest.fixture(scope="module")
def flows(private_stack, prefect_server, tmp_path_factory):  # noqa: F811 - the imported fixture
    stack, base, run_dir = private_stack
    home = tmp_path_factory.mktemp("faults-flow")
    seeds = home / "seeds"
    seeds.mkdir()
    write_csv(seeds / "vgsales.csv", FLOW_ROWS, seed=11)
    settings = dataclasses.replace(
        base, vgsales_seeds_dir=str(seeds), api_port=free_port()  # no API there
    )
    reference = dataclasses.replace(settings, mariadb_database="vgsales_ref")
    # What the flow's plain `dbt build` builds (selectors.yml), tests aside.
    built = run_dbt(["build", "--no-use-colors", "--exclude", "resource_type:test",
                     "tag:monitoring"],
                    reference, target_path=home / "ref-target", log=lambda line: None)
    assert built.ok, built.status_counts
    runs: dict[str, FlowRun] = {}

    def kill_at_marts(line, process, events):
        if "START sql table model" in line and not events:
            events.append(f"killed the flow at: {line.strip()}")
            kill_group(process)

    runs["killed"] = run_flow(settings, run_dir, prefect_server, home / "r1.json",
                              on_line=kill_at_marts)
    raw_after_kill = raw_rows(settings)

    def kill_redis_in_dbt(line, process, events):
        if "Running with dbt" in line and not events:
            kill_pid_file(run_dir / "redis" / "redis.pid")
            events.append("killed redis")

    runs["redis_killed"] = run_flow(settings, run_dir, prefect_server, home / "r2.json",
                                    on_line=kill_redis_in_dbt)
    digests = {"flow": warehouse_digest(settings, settings.mariadb_database),
               "reference": warehouse_digest(settings, reference.mariadb_database)}

    kill_pid_file(run_dir / "mariadb" / "mariadb.pid")

    def restart_mariadb_on_retry(line, process, events):
        if "Retry 1/3 will start" in line and not events:
            events.append(line.strip())
            started = time.monotonic()
            restarted = stack("up")
            assert restarted.returncode == 0, restarted.stderr
            # The retries wait 2, 4 and 8 s: a restart must fit in 14 s.
            events.append(f"mariadb restarted in {time.monotonic() - started:.1f} s")

    runs["mariadb_restarted"] = run_flow(settings, run_dir, prefect_server, home / "r3.json",
                                         "--skip-dbt",
                                         on_line=restart_mariadb_on_retry)
    return {"settings": settings, "runs": runs, "raw_after_kill": raw_after_kill,
            "digests": digests, "stack": stack, "run_dir": run_dir}


def test_killed_flow_leaves_no_half_loaded_raw_table(flows):
    killed = flows["runs"]["killed"]
    assert killed.events and killed.returncode == -signal.SIGKILL, killed.output[-3000:]
    assert killed.report is None
    # dbt had loaded the seeds and started on the models: the raw table is whole.
    assert len(flows["raw_after_kill"]) == FLOW_ROWS


def test_redis_killed_during_the_flow_completes_degraded(flows):
    run = flows["runs"]["redis_killed"]
    assert run.events == ["killed redis"]
    assert run.returncode == 0, run.output[-5000:]
    assert run.report["degraded"] and "Redis unavailable" in run.report["snapshot"]["degraded"]
    assert run.report["snapshot"]["key"] is None
    assert [m["model_name"] for m in run.report["models"]] == list(MODEL_NAMES)
    assert all(m["promoted"] for m in run.report["models"])


def test_rerun_after_a_kill_equals_an_uninterrupted_build(flows):
    flow, reference = flows["digests"]["flow"], flows["digests"]["reference"]
    assert "marts.ml_release_features" in flow and "_raw.raw_vgsales" in flow
    assert flow == reference
    assert flow["_raw.raw_vgsales"][0] == FLOW_ROWS
    settings = flows["settings"]
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute(f"show tables from {quoted(settings.raw_database)}")
        tables = {row[0] for row in cursor.fetchall()}
        assert not {t for t in tables if t.endswith(("__dbt_new", "__dbt_old"))}
        for table, key in (("fct_sales", "release_id"), ("ml_release_features", "release_id")):
            cursor.execute(
                f"select count(*) - count(distinct {quoted(key)}) "
                f"from {quoted(settings.mariadb_database, table)}"
            )
            assert cursor.fetchone() == (0,), table


def test_mariadb_restarted_mid_flow_is_retried_and_completes(flows):
    run = flows["runs"]["mariadb_restarted"]
    assert len(run.events) == 2 and run.events[1].startswith("mariadb restarted"), (
        run.events, run.output[-5000:])
    assert "OperationalError" in run.events[0] and "snapshot_mart" in run.events[0]
    assert run.returncode == 0, run.output[-5000:]
    assert "Finished in state Completed" in run.output


def test_reruns_register_no_model_version_twice(flows):
    settings = flows["settings"]
    first, last = flows["runs"]["redis_killed"].report, flows["runs"]["mariadb_restarted"].report
    uri = settings.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for before, after in zip(first["models"], last["models"]):
        assert after["reused"] and not after["promoted"], after["reason"]
        assert after["version"] == before["version"]
        versions = client.search_model_versions(f"name = '{after['model_name']}'")
        assert [str(v.version) for v in versions] == [str(before["version"])]
        # What the API loads went through this stack's registry server into
        # its artifact store, stored with skops (no pickle), which loads only
        # the types it is told to trust.
        logged = client.get_logged_model(versions[0].source.removeprefix("models:/"))
        location = urlparse(logged.artifact_location)
        assert location.scheme == "mlflow-artifacts", logged.artifact_location
        folder = flows["run_dir"] / "mlflow" / "served-artifacts" / location.path.lstrip("/")
        assert "serialization_format: skops" in (folder / "MLmodel").read_text()
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute(
            "select model_name, model_version, count(*) from "
            f"{quoted(settings.raw_database, 'raw_model_versions')} group by 1, 2"
        )
        recorded = cursor.fetchall()
    assert sorted((name, n) for name, _, n in recorded) == sorted((m, 1) for m in MODEL_NAMES)


# -- the API while Redis dies ------------------------------------------------------------


def test_api_keeps_answering_while_redis_is_killed(flows, tmp_path):
    settings = dataclasses.replace(free_api_ports(flows["settings"]),
                                   api_admin_token="faults-token")
    run_dir = flows["run_dir"]
    up = flows["stack"]("up")  # makes sure Redis runs (run 3 restarted it)
    assert up.returncode == 0, up.stderr
    env = {**os.environ, **settings.as_env(), "VGSALES_RUN_DIR": str(run_dir)}
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen([sys.executable, "-m", "serve"], cwd=ROOT, env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    body = json.dumps({"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.2,
                       "EU_Sales": 0.9, "JP_Sales": 0.1, "Other_Sales": 0.2}).encode()
    statuses: list[int] = []
    stop = threading.Event()

    def request(method: str, path: str, payload: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", settings.api_port, timeout=30)
        try:
            connection.request(method, path, payload, {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def keep_predicting():
        for _ in range(20_000):  # bounded even if the test body fails
            if stop.is_set():
                return
            try:
                statuses.append(request("POST", "/predict", body)[0])
            except OSError:
                statuses.append(-1)

    try:
        wait_every_worker_serving(settings, server, log, timeout=180)
        deadline = time.monotonic() + 180
        clients = [threading.Thread(target=keep_predicting) for _ in range(2)]
        for thread in clients:
            thread.start()
        while len(statuses) < 50:
            time.sleep(0.05)
        kill_pid_file(run_dir / "redis" / "redis.pid")
        answered_before = len(statuses)
        dropped = 0.0
        while time.monotonic() < deadline and dropped == 0:
            time.sleep(0.5)
            metrics = instance_metrics(settings)
            dropped = sum(float(v) for v in re.findall(
                r"^vgsales_prediction_log_dropped_total(?:\{[^}]*\})? (\S+)$", metrics, re.M))
        time.sleep(1)
    finally:
        stop.set()
        for thread in clients if "clients" in locals() else ():
            thread.join(timeout=60)
        server.terminate()
        server.wait(timeout=60)
    assert dropped > 0, "the prediction log should count what it could not write"
    assert len(statuses) > answered_before + 20
    assert set(statuses) == {200}
