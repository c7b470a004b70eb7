"""Benchmark: the API's throughput against a bare Flask app, side by side.

    python -m bench.bench_throughput [--seconds 3] [--runs 3]

Three servers on the same gunicorn settings (`serve/gunicorn_conf.py`:
workers, gthread, threads, keep-alive), one after the other, driven by the
same load generator (`bench_serve.drive`: wrk, else a Python client):

- the bare app (`bench/bare_app.py`: parse the JSON body, answer a constant);
- the API's `POST /predict` and `POST /v1/forecast`, champions trained on the
  dbt-built mart as in `bench_serve`.

Each at 1, 4 and 16 keep-alive connections, `--runs` consecutive runs. The
table gives requests/s (median, min-max), the slowest run as a share of the
median (the run-to-run spread), p50 and each endpoint's ratio to the bare
app. Goals (issue 14): `/predict` at least 70% of the bare app at 4 and 16
connections, `/v1/forecast` at least 60%, the slowest run at least 80% of the
median, p50 at most 1 ms at one connection.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_serve import (
    SINGLE,
    _clean_stream,
    bench_settings,
    drive,
    free_port,
    start_service,
    stop,
    wait_ready,
)
from bench.common import Stats, machine, markdown_table, write_results
from ml.settings import ROOT
from serve import gunicorn_conf

CONNECTIONS = (1, 4, 16)
FORECAST = {"platform": "Wii", "genre": "Racing", "publisher": "Nintendo", "year": 2008}
GOALS = {"predict_vs_bare": 0.70, "forecast_vs_bare": 0.60, "slowest_vs_median": 0.80,
         "p50_ms_at_1": 1.0}


def start_bare(port: int, log: Path) -> subprocess.Popen:
    """The bare app under gunicorn with the API's settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
         "--workers", str(gunicorn_conf.workers), "--worker-class", gunicorn_conf.worker_class,
         "--threads", str(gunicorn_conf.threads), "--keep-alive", str(gunicorn_conf.keepalive),
         "--timeout", str(gunicorn_conf.timeout), "--no-control-socket",
         "bench.bare_app:create_app()"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def measure(port: int, path: str, body: bytes, seconds: float, runs: int) -> dict:
    """`runs` consecutive runs at each connection count, after a warm-up."""
    drive(port, path, body, 1, 4)
    measured = {}
    for connections in CONNECTIONS:
        results = [drive(port, path, body, seconds, connections) for _ in range(runs)]
        measured[connections] = {
            "requests_per_s": Stats.of([r.requests_per_s for r in results]),
            "p50_ms": Stats.of([r.p50_ms for r in results]),
            "errors": sum(r.errors for r in results),
        }
    return measured


def table(measured: dict[str, dict]) -> str:
    rows = []
    bare = measured["bare app"]
    for label, by_connections in measured.items():
        for connections, m in by_connections.items():
            rps = m["requests_per_s"]
            ratio = rps.median / bare[connections]["requests_per_s"].median
            rows.append([label, str(connections), rps.cell(0), f"{rps.min / rps.median:.0%}",
                         m["p50_ms"].cell(2), f"{ratio:.0%}", str(m["errors"])])
    return markdown_table(
        ["server", "connections", "requests/s", "slowest/median", "p50 (ms)", "vs bare",
         "failed"], rows, align="lrrrrrr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    from bench.marts import real_mart
    from tests.api_server import register_champions

    single, forecast = json.dumps(SINGLE).encode(), json.dumps(FORECAST).encode()
    measured: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as folder:
        home = Path(folder)
        settings = bench_settings(home)
        mart, source = real_mart(settings)
        print(f"[bench throughput] training both models on the dbt-built mart ({source})",
              flush=True)
        register_champions(settings, mart)
        port = free_port()
        process = start_bare(port, home / "bare.log")
        try:
            # The bare app has no /ready: its /predict answering is the signal.
            wait_ready(port, process, "/predict", timeout=120, body=single)
            print("[bench throughput] driving the bare app", flush=True)
            measured["bare app"] = measure(port, "/predict", single, args.seconds, args.runs)
        finally:
            stop(process)
        service = dataclasses.replace(settings, api_port=free_port())
        process = start_service(service, home / "service.log")
        try:
            wait_ready(service.api_port, process, "/ready")
            for label, path, body in (("/predict", "/predict", single),
                                      ("/v1/forecast", "/v1/forecast", forecast)):
                print(f"[bench throughput] driving {label}", flush=True)
                measured[label] = measure(service.api_port, path, body, args.seconds, args.runs)
        finally:
            stop(process)
        _clean_stream(settings)
    bare = measured["bare app"]

    def ratio(label: str, connections: int) -> float:
        return (measured[label][connections]["requests_per_s"].median
                / bare[connections]["requests_per_s"].median)

    goals = {
        "predict_vs_bare": min(ratio("/predict", c) for c in (4, 16)) >= GOALS["predict_vs_bare"],
        "forecast_vs_bare": min(ratio("/v1/forecast", c) for c in CONNECTIONS)
        >= GOALS["forecast_vs_bare"],
        "slowest_vs_median": all(
            m["requests_per_s"].min / m["requests_per_s"].median >= GOALS["slowest_vs_median"]
            for by_connections in measured.values() for m in by_connections.values()),
        "p50_ms_at_1": measured["/predict"][1]["p50_ms"].median <= GOALS["p50_ms_at_1"],
    }
    print()
    print(table(measured))
    print()
    for goal, met in goals.items():
        print(f"- goal {goal} ({GOALS[goal]}): {'met' if met else 'NOT met'}")
    generator = "wrk" if shutil.which("wrk") else "python http.client"
    path = write_results("throughput", {
        "machine": machine(), "load_generator": generator, "seconds": args.seconds,
        "runs": args.runs, "measured": {label: {str(c): m for c, m in by.items()}
                                        for label, by in measured.items()},
        "goals": goals,
    })
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
