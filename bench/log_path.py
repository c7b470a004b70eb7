"""The prediction log's cost under load, every process counted.

`measure_live` serves `/predict` (`python -m serve`) with the consumer
(`python -m ml.monitoring.consumer`) running beside it, drives it with
`--connections` keep-alive connections (bench_serve's load generator), waits
until the consumer has landed every answered prediction, and reads from
/proc the CPU time each process spent meanwhile: the API (gunicorn master and
workers), the consumer, Redis and MariaDB. With Redis's command counters
and MariaDB's status counters, it gives per 1,000 predictions: CPU
milliseconds by process, Redis commands and MariaDB statements (all clients:
the stack is private to the benchmark while it runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis
import sqlalchemy as sa

from bench.bench_serve import SINGLE, stop, wait_ready
from bench.load import drive
from bench.common import Stats, cpu_seconds, descendants
from ml.settings import ROOT, Settings

# MariaDB status counters read before and after each run.
MARIADB_COUNTERS = ("Questions", "Com_insert", "Com_commit", "Com_rollback", "Connections")
PROCESSES = ("api", "consumer", "redis", "mariadb")


def cpu_ms(pids: list[int]) -> float:
    """User + system CPU of `pids` so far, in ms (a process gone counts nothing)."""
    return 1000 * sum(map(cpu_seconds, pids))


def family(pid: int) -> list[int]:
    """`pid` and everything below it (nginx, the instances and their workers)."""
    return [pid, *descendants(pid)]


def redis_calls(client: redis.Redis) -> int:
    """Commands Redis has run since it started (all clients, scripts' own calls aside)."""
    stats = client.info("commandstats")
    # Commands a script or function runs are counted on their own too: count
    # only what clients sent.
    inner = {"cmdstat_xadd", "cmdstat_xack", "cmdstat_xdel", "cmdstat_memory|usage",
             "cmdstat_get", "cmdstat_set", "cmdstat_incrby", "cmdstat_decrby",
             "cmdstat_xgroup|create", "cmdstat_xinfo|groups", "cmdstat_xlen",
             "cmdstat_xgroup|setid", "cmdstat_getset", "cmdstat_info"}
    return sum(s["calls"] for name, s in stats.items() if name not in inner)


def mariadb_counters(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "select variable_name, variable_value from information_schema.global_status "
            f"where variable_name in ({', '.join(repr(c.upper()) for c in MARIADB_COUNTERS)})"
        )).all()
    return {name.lower(): int(value) for name, value in rows}


def landed(engine: sa.Engine, settings: Settings) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(
            f"select count(*) from `{settings.raw_database}`.raw_prediction_log"
        )).scalar_one()


@dataclasses.dataclass
class Sample:
    """One run: predictions answered, CPU ms by process, Redis and MariaDB calls."""

    predictions: int
    cpu: dict[str, float]
    redis_calls: int
    mariadb: dict[str, int]
    p50_ms: float
    requests_per_s: float


def _pid(path: Path) -> int:
    return int(path.read_text().strip())


def run_once(settings: Settings, api: subprocess.Popen, consumer: subprocess.Popen,
             seconds: float, connections: int) -> Sample:
    admin = redis.Redis.from_url(settings.redis_url)
    server = sa.create_engine(settings.sqlalchemy_url(), poolclass=sa.pool.NullPool)
    pids = {
        "api": family(api.pid),
        "consumer": [consumer.pid],
        "redis": [_pid(settings.run_dir / "redis" / "redis.pid")],
        "mariadb": [_pid(settings.run_dir / "mariadb" / "mariadb.pid")],
    }
    try:
        rows_before = landed(server, settings)
        counters_before = mariadb_counters(server)
        calls_before = redis_calls(admin)
        cpu_before = {name: cpu_ms(p) for name, p in pids.items()}
        run = drive(settings.api_port, "/predict", json.dumps(SINGLE).encode(), seconds,
                    connections)
        if run.errors:
            raise RuntimeError(f"{run.errors} failed requests")
        # Until the consumer has landed what was answered (and is idle again).
        expected, previous = None, -1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = landed(server, settings) - rows_before
            if now == previous and now > 0:
                expected = now
                break
            previous = now
            time.sleep(2)
        if expected is None:
            raise RuntimeError("the consumer did not catch up within 120 s")
        cpu_after = {name: cpu_ms(p) for name, p in pids.items()}
        calls = redis_calls(admin) - calls_before
        counters = mariadb_counters(server)
        return Sample(
            predictions=expected,
            cpu={name: cpu_after[name] - cpu_before[name] for name in pids},
            redis_calls=calls,
            mariadb={k: counters[k] - counters_before[k] for k in counters},
            p50_ms=run.p50_ms,
            requests_per_s=run.requests_per_s,
        )
    finally:
        admin.close()
        server.dispose()


def per_thousand(samples: list[Sample]) -> dict[str, Stats]:
    """Median (min-max) per 1,000 predictions over `samples`."""
    out = {f"cpu_ms.{name}": Stats.of([s.cpu[name] * 1000 / s.predictions for s in samples])
           for name in PROCESSES}
    out["redis_calls"] = Stats.of([s.redis_calls * 1000 / s.predictions for s in samples])
    for counter in samples[0].mariadb:
        out[f"mariadb.{counter}"] = Stats.of(
            [s.mariadb[counter] * 1000 / s.predictions for s in samples])
    out["predictions"] = Stats.of([float(s.predictions) for s in samples])
    out["p50_ms"] = Stats.of([s.p50_ms for s in samples])
    out["requests_per_s"] = Stats.of([s.requests_per_s for s in samples])
    return out


def start(module: str, settings: Settings, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT,
        env={**os.environ, **settings.as_env()}, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def measure_live(settings: Settings, home: Path, *, seconds: float, repeats: int,
                 connections: tuple[int, ...]) -> dict[int, dict[str, Stats]]:
    """Per 1,000 predictions, at each number of connections (see the module docstring)."""
    api = start("serve", settings, home / "api.log", "--port", str(settings.api_port))
    consumer = start("ml.monitoring.consumer", settings, home / "consumer.log")
    try:
        wait_ready(settings.api_port, api, "/predict", body=json.dumps(SINGLE).encode())
        drive(settings.api_port, "/predict", json.dumps(SINGLE).encode(), 2, max(connections))
        results = {}
        for count in connections:
            samples = []
            for run in range(repeats):
                sample = run_once(settings, api, consumer, seconds, count)
                samples.append(sample)
                print(f"[bench stream] {count} connection(s), run {run + 1}/{repeats}: "
                      f"{sample.predictions:,} predictions, CPU ms "
                      + ", ".join(f"{k} {v:.0f}" for k, v in sample.cpu.items()), flush=True)
            results[count] = per_thousand(samples)
        return results
    except Exception:
        for name in ("api.log", "consumer.log"):
            print((home / name).read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop(api)
        stop(consumer)
