"""The prediction log under load, for real: the API (`python -m serve`: nginx
and the gunicorn instances), Redis,
MariaDB and the consumer process (`python -m ml.monitoring.consumer`).

Every prediction the API answers either lands in the warehouse or is counted
as dropped, in /metrics and in the drain's report, exactly; and no client can
keep another's prediction out of the warehouse by reusing its request id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from tests.api_server import instance_metrics, register_champions, start, wait_ready
from ml.monitoring.drain import drain
from ml.monitoring.stream import BYTES_KEY, STREAM
from ml.settings import ROOT, Settings
from ml.warehouse.dbt_runner import run_dbt
from tests.helpers import free_api_ports, isolated_settings

pytestmark = pytest.mark.slow

REDIS_DB = 6
# Small enough that a few hundred requests pass it while nothing drains.
CAP_BYTES = 60_000
BATCH_ROWS = 20
# The id-claiming batches: all of them fit under the cap even if the consumer
# lags, so the test is about keys, not about the cap.
CLAIM_ROWS = 5
RECORD = {"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.0,
          "EU_Sales": 0.5, "JP_Sales": 0.1, "Other_Sales": 0.1}


def call(port: int, path: str, body, headers: dict | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST" if body is not None else "GET", path,
                           None if body is None else json.dumps(body).encode(),
                           {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def metric(settings: Settings, name: str) -> float:
    """`name` summed over every worker of every instance."""
    text = instance_metrics(settings)
    return sum(float(value) for value in
               re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def settled_counts(settings: Settings, timeout: float = 60) -> dict[str, float]:
    """The API's counters once every answered prediction is written or dropped."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {name: metric(settings, f"vgsales_{name}_total") for name in
                  ("predictions", "prediction_log_written", "prediction_log_dropped")}
        settled = counts["prediction_log_written"] + counts["prediction_log_dropped"]
        if settled == counts["predictions"] or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def landed(settings: Settings, where: str = "1 = 1", **params) -> int:
    engine = sa.create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(
                f"select count(*) from `{settings.raw_database}`.raw_prediction_log where {where}"
            ), params).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def api(stack_settings, built_mart, seeds_dir, tmp_path_factory):
    """A served API with a small log cap over a warehouse with the landing table."""
    home = tmp_path_factory.mktemp("predlog")
    # dbt needs a raw file to stage even for a run-operation; a fresh clone's
    # seeds/ holds none until `make data`.
    settings = dataclasses.replace(
        free_api_ports(isolated_settings(stack_settings, "predlog", REDIS_DB, home)),
        prediction_log_max_bytes=CAP_BYTES, vgsales_seeds_dir=str(seeds_dir),
    )
    redis.Redis.from_url(settings.redis_url).flushdb()
    register_champions(settings, built_mart.sample(1500, random_state=5).sort_values("release_id"))
    server = sa.create_engine(settings.sqlalchemy_url().replace(
        f"/{settings.mariadb_database}?", "/?"))
    with server.begin() as connection:
        connection.execute(sa.text(f"create database if not exists `{settings.mariadb_database}`"))
    server.dispose()
    made = run_dbt(["run-operation", "create_monitoring_landing_tables"], settings,
                   log=lambda line: None, target_path=home / "target")
    assert made.ok
    log = home / "gunicorn.log"
    process = start(settings, log)
    try:
        wait_ready(settings, process, log)
        yield settings, home
    finally:
        process.terminate()
        process.wait(timeout=60)


def wait_until_landed(settings: Settings, rows: int, timeout: float = 60) -> None:
    """Until the landing table holds `rows` rows (the consumer works on its own)."""
    deadline = time.monotonic() + timeout
    while landed(settings) < rows and time.monotonic() < deadline:
        time.sleep(0.5)


def start_consumer(settings: Settings, home: Path) -> subprocess.Popen:
    """The consumer process, once it reads the stream (its first report)."""
    log = home / f"consumer-{time.monotonic_ns()}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "ml.monitoring.consumer", "--report-seconds", "1"],
        cwd=ROOT, env={**os.environ, **settings.as_env()},
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )
    deadline = time.monotonic() + 120
    while "[drain]" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    assert process.wait(timeout=60) == 0


def test_past_the_cap_every_prediction_is_landed_or_counted(api):
    """No consumer while the API is driven past the stream's byte cap: the
    stream stops at the cap, and warehouse rows plus the drops the drain
    reports equal the API's prediction counter, as do /metrics' drops."""
    settings, _ = api
    port = settings.api_port
    before = settled_counts(settings)
    first = drain(settings, log=lambda line: None)  # earlier tests' leftovers
    rows_before = landed(settings)

    def predict(number: int) -> int:
        if number % 10 == 0:
            return call(port, "/predict/batch", [RECORD] * BATCH_ROWS)[0]
        return call(port, "/predict", RECORD)[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(predict, range(600)))
    assert set(statuses) == {200}
    counts = settled_counts(settings)
    answered = counts["predictions"] - before["predictions"]
    dropped = counts["prediction_log_dropped"] - before["prediction_log_dropped"]
    assert answered == 540 + 60 * BATCH_ROWS
    assert dropped > 0, "the cap should have been reached"
    with redis.Redis.from_url(settings.redis_url) as client:
        assert int(client.get(BYTES_KEY)) <= CAP_BYTES

    outcome = drain(settings, log=lambda line: None)
    assert landed(settings) - rows_before == outcome.inserted == outcome.rows
    assert outcome.inserted + outcome.dropped == answered
    assert outcome.dropped == dropped
    assert outcome.dropped_total == first.dropped_total + dropped
    assert outcome.dropped_total == counts["prediction_log_dropped"]
    with redis.Redis.from_url(settings.redis_url) as client:
        assert client.xlen(STREAM) == 0 and int(client.get(BYTES_KEY)) == 0


@contextlib.contextmanager
def consumer_running(settings: Settings, home: Path) -> Iterator[dict]:
    """The consumer process around the block; then waits until what the API
    answered meanwhile has landed. The dict yielded gets `before` (the API's
    counters), `rows_before`, and at the end `counts` and `answered`."""
    drain(settings, log=lambda line: None)  # earlier tests' leftovers
    run = {"before": settled_counts(settings), "rows_before": landed(settings)}
    consumer = start_consumer(settings, home)
    try:
        yield run
        run["counts"] = settled_counts(settings)
        run["answered"] = run["counts"]["predictions"] - run["before"]["predictions"]
        wait_until_landed(settings, run["rows_before"] + run["answered"])
    finally:
        stop(consumer)


def test_the_consumer_keeps_up_and_nothing_is_dropped(api):
    settings, home = api
    port = settings.api_port
    with consumer_running(settings, home) as run:
        # Bursts well under the (test-sized) cap, as traffic the consumer keeps up with.
        for _ in range(6):
            with ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(lambda _: call(port, "/predict", RECORD)[0], range(50)))
            assert set(statuses) == {200}
            time.sleep(1)
    dropped = run["counts"]["prediction_log_dropped"] - run["before"]["prediction_log_dropped"]
    assert dropped == 0
    assert landed(settings) - run["rows_before"] == run["answered"] == 300


def test_reused_request_ids_keep_nobody_out_of_the_warehouse(api):
    """A client replays other clients' ids (seen in responses) and claims the
    ids it guesses come next, in big batches, before the victim's calls."""
    settings, home = api
    port = settings.api_port
    with consumer_running(settings, home) as run:
        seen = [call(port, "/predict", RECORD)[1]["X-Request-ID"] for _ in range(4)]
        assert len(set(seen)) == 4 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in seen)
        # The old scheme's guess: same worker prefix, next counter values.
        guessed = [f"{i.rsplit('-', 1)[0]}-{n:x}" for i in seen for n in range(1, 6)]
        for request_id in seen + guessed:
            status, headers, _ = call(port, "/predict/batch", [RECORD] * CLAIM_ROWS,
                                      {"X-Request-ID": request_id})
            assert status == 200 and headers["X-Request-ID"] == request_id
        victim = [call(port, "/predict", RECORD)[1]["X-Request-ID"] for _ in range(8)]
        assert not set(victim) & set(seen + guessed)
        # The victim reusing its own id (a retry) is two predictions, two rows.
        call(port, "/predict", RECORD, {"X-Request-ID": victim[0]})
    assert run["answered"] == 4 + len(seen + guessed) * CLAIM_ROWS + 8 + 1
    assert run["counts"]["prediction_log_dropped"] == run["before"]["prediction_log_dropped"]
    assert landed(settings) - run["rows_before"] == run["answered"]
    for request_id in seen:  # the victim's row and the replay's batch
        assert landed(settings, "request_id = :r", r=request_id) == 1 + CLAIM_ROWS
    assert landed(settings, "request_id = :r", r=victim[0]) == 2
    for request_id in victim[1:]:
        assert landed(settings, "request_id = :r", r=request_id) == 1
