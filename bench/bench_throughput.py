"""Benchmark: the API behind nginx against a bare Flask app behind the same nginx and instances.

    python -m bench.bench_throughput [--seconds 5] [--runs 5] [--kill-seconds 20]

Both are served as `make serve` serves the API (`python -m serve`: nginx on
API_PORT in front of API_INSTANCES gunicorn instances, serve/edge/), one
after the other, each with the prediction-log consumer running beside it:

- the reference: the instances serve `bench/bare_app.py` (parse the JSON
  body, answer a constant), so its figures are what nginx, gunicorn, Flask
  and the loopback allow on this machine;
- the API, both champions trained on the dbt-built mart (`bench.marts`).

`bench.load.drive` (wrk, else a Python client) drives `POST /predict` at 1
and 4 keep-alive connections and `POST /v1/forecast` at 4, `--runs` runs of
`--seconds` each. Around every run, the CPU time of every process (/proc):
the instances, nginx, the consumer, Redis and MariaDB, per 1,000 answers
(the consumer's once it has landed the run's predictions). Last, one API
instance is killed (kill -9, master and workers) 5 s into a
`--kill-seconds` run: every request must still be answered 2xx, and the
instance, restarted by the launcher, must take requests again.

Prints the measurements, then the goals with today's figures; writes
bench/results/throughput.json. Uses Redis db 6 (as bench_serve) and the
database `<MARIADB_DATABASE>_bench_edge` (dropped afterwards).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from bench.bench_serve import SINGLE, _clean_stream, bench_settings, start_service, stop, wait_ready
from bench.bench_stream import create_landing_database, drop_landing_database
from bench.common import Stats, cpu_seconds, descendants, machine, write_results
from ml.markdown import markdown_table
from bench.load import Run, drive, generator
from ml.monitoring.stream import STREAM
from ml.settings import ROOT, Settings
from serve.edge import limits
from serve.edge.limits import instance_ports, workers_per_instance
from tests.api_server import wait_every_worker_serving

FORECAST = {"platform": "Wii", "genre": "Racing", "publisher": "Nintendo", "year": 2008}
BARE_APP = "bench.bare_app:create_app"
GROUPS = ("API instances", "nginx", "consumer", "Redis", "MariaDB")
KILL_AFTER_SECONDS = 5
GOALS = {"predict_vs_bare": 0.70, "slowest_vs_median": 0.80, "forecast_vs_bare": 0.50,
         "cpu_vs_bare": 2.0, "consumer_vs_api": 0.10, "p50_ms_at_1": 1.0}


# -- CPU time of every process ------------------------------------------------------


def _is_nginx(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx")
    except FileNotFoundError:
        return False


class Processes:
    """Every process that works for an answer, by group."""

    def __init__(self, settings: Settings, edge: subprocess.Popen,
                 consumer: subprocess.Popen) -> None:
        self.settings, self.edge, self.consumer = settings, edge, consumer

    def groups(self) -> dict[str, list[int]]:
        below = descendants(self.edge.pid)
        nginx = [pid for pid in below if _is_nginx(pid)]
        run_dir = self.settings.run_dir
        return {
            # The launcher (serve.edge.launcher) counts with the instances it watches.
            "API instances": [self.edge.pid, *(pid for pid in below if pid not in nginx)],
            "nginx": nginx,
            "consumer": [self.consumer.pid, *descendants(self.consumer.pid)],
            "Redis": [int((run_dir / "redis" / "redis.pid").read_text())],
            "MariaDB": [int((run_dir / "mariadb" / "mariadb.pid").read_text())],
        }

    def cpu(self) -> dict[str, float]:
        return {group: sum(map(cpu_seconds, pids)) for group, pids in self.groups().items()}


def drained(settings: Settings, timeout: float = 60) -> None:
    """Until the consumer has landed (and deleted) every entry of the stream."""
    client = redis.Redis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while client.xlen(STREAM) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        client.close()


@dataclasses.dataclass
class Measured:
    runs: list[Run]
    cpu_ms_per_1000: dict[str, float]  # by group, over all the runs

    @property
    def requests_per_s(self) -> Stats:
        return Stats.of([r.requests_per_s for r in self.runs])

    @property
    def p50_ms(self) -> Stats:
        return Stats.of([r.p50_ms for r in self.runs])

    @property
    def failed(self) -> int:
        return sum(r.errors for r in self.runs)

    def as_dict(self) -> dict:
        return {"requests_per_s": self.requests_per_s, "p50_ms": self.p50_ms,
                "failed": self.failed, "cpu_ms_per_1000": self.cpu_ms_per_1000,
                "answered_2xx": sum(r.answered_2xx for r in self.runs)}


def measure(settings: Settings, processes: Processes, path: str, body: bytes,
            connections: int, seconds: float, runs: int) -> Measured:
    """`runs` runs after a warm-up; CPU per 1,000 answers over all of them,
    the consumer's included once it has caught up."""
    drive(settings.api_port, path, body, 1, connections)
    drained(settings)
    before = processes.cpu()
    results = [drive(settings.api_port, path, body, seconds, connections) for _ in range(runs)]
    drained(settings)
    after = processes.cpu()
    answered = sum(r.answered_2xx for r in results)
    return Measured(results, {g: (after[g] - before[g]) * 1e6 / max(answered, 1) for g in GROUPS})


# -- the two edges --------------------------------------------------------------------


def start_consumer(settings: Settings, log: Path) -> subprocess.Popen:
    """`python -m ml.monitoring.consumer`, as `make serve` starts it beside the API."""
    return subprocess.Popen([sys.executable, "-m", "ml.monitoring.consumer"], cwd=ROOT,
                            env={**os.environ, **settings.as_env()},
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def serve(settings: Settings, home: Path, label: str, app: str | None):
    """Start the edge (and the consumer) for `label`; `(edge, consumer, processes)`."""
    edge = start_service(settings, home / f"{label}.log", app=app)
    consumer = start_consumer(settings, home / f"{label}-consumer.log")
    try:
        wait_ready(settings.api_port, edge, "/health" if app else "/ready", timeout=600)
        if not app:  # every worker of every instance, both models loaded
            wait_every_worker_serving(settings, edge, home / f"{label}.log", timeout=600)
    except Exception:
        print((home / f"{label}.log").read_text()[-3000:], file=sys.stderr)
        stop(consumer)
        stop(edge)
        raise
    return edge, consumer, Processes(settings, edge, consumer)


def kill_run(settings: Settings, seconds: float, body: bytes) -> dict:
    """kill -9 one instance KILL_AFTER_SECONDS into a `seconds` run; then
    wait for it to take requests through nginx again."""
    from tests.api_server import kill_instance, wait_rejoined

    port = instance_ports(settings)[0]
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(
        run=drive(settings.api_port, "/predict", body, seconds, 4)))
    load.start()
    time.sleep(KILL_AFTER_SECONDS)
    killed = kill_instance(settings, port)
    load.join()
    run: Run = result["run"]
    print(f"[bench throughput] kill -9 of the instance on {port}: {run.answered_2xx:,} answered "
          f"2xx, {run.non_2xx} other answers, {run.socket_errors} socket errors; waiting for it "
          "to rejoin", flush=True)
    rejoined = wait_rejoined(settings, port, killed, SINGLE,
                             timeout=limits.FAILED_INSTANCE_SECONDS + 300)
    return {"answered_2xx": run.answered_2xx, "non_2xx": run.non_2xx,
            "socket_errors": run.socket_errors, "seconds": seconds,
            "rejoined_after_s": rejoined + seconds - KILL_AFTER_SECONDS}


# -- tables -----------------------------------------------------------------------------


def measurements_table(measured: dict[str, dict[int, Measured]]) -> str:
    rows = []
    bare = measured["bare app"]
    for label, by_connections in measured.items():
        for connections, m in by_connections.items():
            rps = m.requests_per_s
            ratio = rps.median / bare[connections].requests_per_s.median
            cpu = m.cpu_ms_per_1000
            rows.append([label, str(connections), rps.cell(0), f"{rps.min / rps.median:.0%}",
                         m.p50_ms.cell(2), f"{ratio:.0%}", f"{sum(cpu.values()):.0f}",
                         *(f"{cpu[g]:.0f}" for g in GROUPS), str(m.failed)])
    return markdown_table(
        ["server", "connections", "requests/s", "slowest/median", "p50 (ms)", "vs bare",
         "CPU ms/1,000 (all)", *GROUPS, "failed"], rows, align="llrrrrrrrrrrr")


def goals(measured: dict[str, dict[int, Measured]], kill: dict) -> list[dict]:
    """Each goal with today's figure and whether it is met."""
    bare, predict, forecast = measured["bare app"], measured["/predict"], measured["/v1/forecast"]

    def total(m: Measured) -> float:
        return sum(m.cpu_ms_per_1000.values())

    rows = []

    def goal(measure: str, target: str, value: float, met: bool, today: str) -> None:
        rows.append({"measure": measure, "goal": target, "value": value, "met": met,
                     "today": today})

    ratio = predict[4].requests_per_s.median / bare[4].requests_per_s.median
    goal("/predict, 4 connections, vs the bare app", "≥ 70%", ratio,
         ratio >= GOALS["predict_vs_bare"],
         f"{ratio:.0%} ({predict[4].requests_per_s.median:,.0f} vs "
         f"{bare[4].requests_per_s.median:,.0f} req/s)")
    rps = predict[4].requests_per_s
    goal(f"/predict, 4 connections, slowest of {len(rps.runs)} runs vs the median", "≥ 80%",
         rps.min / rps.median, rps.min / rps.median >= GOALS["slowest_vs_median"],
         f"{rps.min / rps.median:.0%}")
    ratio = forecast[4].requests_per_s.median / bare[4].requests_per_s.median
    goal("/v1/forecast, 4 connections, vs the bare app", "≥ 50%", ratio,
         ratio >= GOALS["forecast_vs_bare"],
         f"{ratio:.0%} ({forecast[4].requests_per_s.median:,.0f} req/s)")
    for connections in (1, 4):
        ratio = total(predict[connections]) / total(bare[connections])
        goal(f"CPU per 1,000 /predict, all processes, {connections} connection(s), vs bare",
             "≤ 2x", ratio, ratio <= GOALS["cpu_vs_bare"],
             f"{ratio:.1f}x ({total(predict[connections]):.0f} vs "
             f"{total(bare[connections]):.0f} ms)")
    for connections in (1, 4):
        cpu = predict[connections].cpu_ms_per_1000
        ratio = cpu["consumer"] / cpu["API instances"]
        goal(f"consumer CPU vs the API instances', {connections} connection(s)", "≤ 10%",
             ratio, ratio <= GOALS["consumer_vs_api"],
             f"{ratio:.0%} ({cpu['consumer']:.0f} vs {cpu['API instances']:.0f} ms per 1,000)")
    p50 = predict[1].p50_ms.median
    goal("/predict p50, 1 connection", "≤ 1 ms", p50, p50 <= GOALS["p50_ms_at_1"],
         f"{p50:.2f} ms")
    failed = kill["non_2xx"] + kill["socket_errors"]
    goal(f"kill -9 of an instance during a {kill['seconds']:.0f} s run", "0 non-2xx, 0 socket "
         "errors; rejoins", failed, failed == 0,
         f"{kill['non_2xx']} non-2xx, {kill['socket_errors']} socket errors of "
         f"{kill['answered_2xx'] + failed:,}; rejoined {kill['rejoined_after_s']:.0f} s after")
    return rows


def goals_table(rows: list[dict]) -> str:
    return markdown_table(["measure", "goal", "today", ""],
                          [[r["measure"], r["goal"], r["today"], "met" if r["met"] else "MISSED"]
                           for r in rows])


# -- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kill-seconds", type=float, default=20)
    args = parser.parse_args(argv)

    from bench.marts import real_mart
    from tests.api_server import register_champions

    single, forecast = json.dumps(SINGLE).encode(), json.dumps(FORECAST).encode()
    measured: dict[str, dict[int, Measured]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as folder:
        home = Path(folder)
        base = bench_settings(home)
        settings = dataclasses.replace(
            base, mariadb_database=f"{base.mariadb_database}_bench_edge")
        create_landing_database(settings)
        try:
            mart, source = real_mart(base)
            print(f"[bench throughput] training both models on the dbt-built mart ({source})",
                  flush=True)
            register_champions(settings, mart)
            edge, consumer, processes = serve(settings, home, "bare", BARE_APP)
            try:
                print("[bench throughput] driving the bare app", flush=True)
                measured["bare app"] = {c: measure(settings, processes, "/predict", single, c,
                                                   args.seconds, args.runs) for c in (1, 4)}
            finally:
                stop(consumer)
                stop(edge)
            edge, consumer, processes = serve(settings, home, "api", None)
            try:
                print("[bench throughput] driving /predict", flush=True)
                measured["/predict"] = {c: measure(settings, processes, "/predict", single, c,
                                                   args.seconds, args.runs) for c in (1, 4)}
                print("[bench throughput] driving /v1/forecast", flush=True)
                measured["/v1/forecast"] = {4: measure(settings, processes, "/v1/forecast",
                                                       forecast, 4, args.seconds, args.runs)}
                kill = kill_run(settings, args.kill_seconds, single)
            finally:
                stop(consumer)
                stop(edge)
        finally:
            _clean_stream(settings)
            drop_landing_database(settings)
    rows = goals(measured, kill)
    context = {**machine(), "instances": settings.api_instances,
               "workers_per_instance": workers_per_instance(settings),
               "threads": limits.THREADS, "load_generator": generator()}
    print()
    print(measurements_table(measured))
    print(f"\n{context['instances']} instance(s) x {context['workers_per_instance']} worker(s) x "
          f"{context['threads']} thread(s) behind nginx; {context['load_generator']}; load "
          f"average (1 min) {context['load_average_1m']:.1f} at the end, {context['cpus']} CPUs")
    print("\nGoals (side by side in this run):\n")
    print(goals_table(rows))
    path = write_results("throughput", {
        "machine": context, "seconds": args.seconds, "runs": args.runs,
        "measured": {label: {str(c): m.as_dict() for c, m in by.items()}
                     for label, by in measured.items()},
        "kill": kill, "goals": rows,
    })
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
