"""The prediction log under load, for real: the API (`python -m serve`: nginx
and the gunicorn instances), Redis,
MariaDB and the consumer process (`python -m ml.monitoring.consumer`).

Every prediction the API answers either lands in the warehouse or is counted
as dropped, in /metrics and in the warehouse's losses, exactly, even when an
instance is killed under load; and no client can keep another's prediction
out of the warehouse by reusing its request id.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from tests.api_server import (
    instance_metrics, register_champions, served_versions, start, wait_every_worker_serving,
)
from ml.monitoring.drain import drain
from ml.monitoring.stream import STREAM
from ml.settings import ROOT, Settings
from serve.edge.limits import workers_per_instance
from tests.helpers import (
    create_landing_tables, empty_redis_db, free_api_ports, free_port, isolated_settings, lost,
)

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
    empty_redis_db(settings)
    register_champions(settings, built_mart.sample(1500, random_state=5).sort_values("release_id"))
    create_landing_tables(settings, home / "target")
    log = home / "gunicorn.log"
    process = start(settings, log)
    try:
        wait_every_worker_serving(settings, process, log)
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
    lands equal the API's prediction counter, as do /metrics' drops."""
    settings, _ = api
    port = settings.api_port
    before = settled_counts(settings)
    drain(settings, log=lambda line: None)  # earlier tests' leftovers
    rows_before, lost_before = landed(settings), lost(settings)

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
        # Redis measures the stream: one node (4 KiB) and one entry past the cap at most.
        assert client.memory_usage(STREAM) <= CAP_BYTES + 16_384

    # Each worker writes its drop records within a second or so.
    inserted = dropped_landed = 0
    deadline = time.monotonic() + 30
    while inserted + dropped_landed < answered and time.monotonic() < deadline:
        time.sleep(1)
        outcome = drain(settings, log=lambda line: None)
        inserted, dropped_landed = inserted + outcome.inserted, dropped_landed + outcome.dropped
    assert inserted + dropped_landed == answered
    assert dropped_landed == dropped
    assert landed(settings) - rows_before == inserted
    assert lost(settings) - lost_before == dropped
    with redis.Redis.from_url(settings.redis_url) as client:
        assert client.xlen(STREAM) == 0


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


def test_a_killed_instance_loses_no_answered_prediction_uncounted(api, tmp_path):
    """kill -9 of a second instance's gunicorn master and workers while four
    keep-alive clients drive it. What its workers held in memory is adopted
    by the first instance's workers (their counts share a folder) and landed
    as `worker_lost`, and the appends they were waiting on as
    `worker_in_flight` (landed or not, no one can tell): every prediction it
    answered is a row or counted, and rows plus `worker_lost` exceed the
    answers only by requests in flight (recorded, then killed before the
    answer went out)."""
    settings, home = api
    victim = dataclasses.replace(settings, api_port=free_port(),
                                 prediction_log_max_bytes=1 << 30)
    log = tmp_path / "victim.log"
    # One gunicorn instance of its own, outside nginx's rotation.
    process = subprocess.Popen(
        [sys.executable, "-m", "serve.instance", "--port", str(victim.api_port)],
        cwd=ROOT, env={**os.environ, **victim.as_env()},
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    drain(settings, log=lambda line: None)  # earlier tests' leftovers
    lost_before = lost(settings)
    worker_lost_before = lost(settings, "worker_lost")
    in_flight_before = lost(settings, "worker_in_flight")
    answered: list[str] = []
    broken: list[str] = []
    stop_load = threading.Event()

    def load(client: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", victim.api_port, timeout=10)
        for number in itertools.count():
            if stop_load.is_set():
                return
            request_id = f"kill9-{client}-{number}"
            try:
                connection.request("POST", "/predict", json.dumps(RECORD).encode(),
                                   {"Content-Type": "application/json", "X-Request-ID": request_id})
                response = connection.getresponse()
                response.read()
                (answered if response.status == 200 else broken).append(request_id)
            except (OSError, http.client.HTTPException):
                broken.append(request_id)
                connection.close()
                time.sleep(0.05)

    consumer = start_consumer(settings, home)
    try:
        deadline = time.monotonic() + 180
        while len(served_versions(victim.api_port)) < workers_per_instance(victim):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-5000:]
            time.sleep(0.5)
        clients = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for thread in clients:
            thread.start()
        while len(answered) < 300:
            time.sleep(0.05)
        pids = [process.pid, *map(int, Path(
            f"/proc/{process.pid}/task/{process.pid}/children").read_text().split())]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
        time.sleep(1)  # the clients meet the dead port
        stop_load.set()
        for thread in clients:
            thread.join(timeout=30)
        assert len(broken) >= 4
        # Until the first instance's workers adopted the dead counts and the
        # consumer landed everything.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = landed_ids(settings, "kill9-%")
            counted = lost(settings) - lost_before
            if len(rows) + counted >= len(answered):
                time.sleep(3)  # and nothing more arrives
                rows = landed_ids(settings, "kill9-%")
                break
            time.sleep(0.5)
        worker_lost = lost(settings, "worker_lost") - worker_lost_before
        in_flight = lost(settings, "worker_in_flight") - in_flight_before
    finally:
        stop(consumer)
        instance = victim.run_dir / "serve" / str(victim.api_port)
        shutil.rmtree(instance, ignore_errors=True)
        instance.with_name(f"{instance.name}.lock").unlink(missing_ok=True)
    assert max(collections.Counter(rows).values()) == 1
    assert set(rows) <= set(answered) | set(broken)
    missing = set(answered) - set(rows)
    assert len(missing) <= worker_lost + in_flight
    assert len(rows) + worker_lost - len(answered) <= len(clients)
    assert lost(settings) - lost_before == worker_lost + in_flight  # nothing else dropped


def landed_ids(settings: Settings, pattern: str) -> list[str]:
    """Request ids of the landed rows whose id is like `pattern` (one per row)."""
    engine = sa.create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(
                f"select request_id from `{settings.raw_database}`.raw_prediction_log "
                "where request_id like :p"), {"p": pattern}).scalars())
    finally:
        engine.dispose()
