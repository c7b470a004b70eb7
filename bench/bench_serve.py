"""Benchmark: the prediction service against the original design, on loopback.

    python -m bench.bench_serve [--seconds 5] [--repeats 3] [--connections 4]

Trains both models on the mart dbt builds from the real vgsales.csv (or a
synthetic file of its size; `bench.marts.real_mart`) into a private MLflow
registry, as the pipeline does (fit, evaluate, register), starts the service
(`python -m serve`: nginx in front of the gunicorn instances) and the
original design (`bench/original_app.py`: one gunicorn, a worker per core,
the same threads, the same model version, no proxy), then drives each with
`bench.load.drive` (wrk, or a multi-process keep-alive Python client):

- single predictions: `POST /predict`, p50/p99 latency and requests/s;
- batches: `POST /predict/batch` with 1,000 rows, rows/s.

Each figure is the median (min–max) of `--repeats` runs; failed requests
(non-2xx answers, connection errors) are counted and must be none. Prints a markdown table and writes
bench/results/serve.json. Goals on the 2-core reference machine:
p50 <= 2 ms, >= 1,500 requests/s, >= 100,000 batch rows/s, >= 3x the
original design's single-prediction throughput.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import load
from bench.common import Stats, machine, write_results
from ml.markdown import markdown_table
from bench.load import drive
from ml.settings import ROOT, Settings, load_settings
from serve import gunicorn_conf
from serve.edge.limits import workers_per_instance

REDIS_DB = 6
BATCH_ROWS = 1000
GOALS = {"no_failed_requests": 0, "p50_ms": 2.0, "requests_per_s": 1500, "batch_rows_per_s": 100_000, "speedup": 3.0}
SINGLE = {
    "Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.2,
    "EU_Sales": 0.9, "JP_Sales": 0.1, "Other_Sales": 0.2,
}


def wait_ready(port: int, process: subprocess.Popen, path: str, timeout: float = 180,
               body: bytes | None = None) -> None:
    """Until `GET path` (or, with `body`, a JSON `POST`) answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            if body is None:
                connection.request("GET", path)
            else:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def measure(port: int, seconds: float, repeats: int, connections: int) -> dict[str, Stats]:
    """Median-of-`repeats` figures for single predictions and batches."""
    single = json.dumps(SINGLE).encode()
    batch = json.dumps([SINGLE] * BATCH_ROWS).encode()
    drive(port, "/predict", single, 2, connections)  # warm-up
    singles = [drive(port, "/predict", single, seconds, connections) for _ in range(repeats)]
    batches = [drive(port, "/predict/batch", batch, seconds, 2) for _ in range(repeats)]
    return {
        "failed_requests": Stats.of([float(r.errors) for r in singles + batches]),
        "p50_ms": Stats.of([r.p50_ms for r in singles]),
        "p99_ms": Stats.of([r.p99_ms for r in singles]),
        "requests_per_s": Stats.of([r.requests_per_s for r in singles]),
        "batch_rows_per_s": Stats.of([r.requests_per_s * BATCH_ROWS for r in batches]),
    }


# -- the two servers ---------------------------------------------------------------


def bench_settings(home: Path) -> Settings:
    """Settings of a private registry and Redis db, and free API ports."""
    from tests.helpers import free_api_ports

    base = load_settings()
    return free_api_ports(dataclasses.replace(
        base,
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "artifacts"),
        redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}",
    ))


def start_service(settings: Settings, log: Path, app: str | None = None) -> subprocess.Popen:
    """The service as `make serve` runs it: nginx on `settings.api_port` in
    front of the instances; with `app`, the instances serve that factory."""
    env = {**os.environ, **settings.as_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "serve", "--port", str(settings.api_port),
         *(["--app", app] if app else [])],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def start_original(settings: Settings, version: str, port: int, log: Path) -> subprocess.Popen:
    factory = (
        f"bench.original_app:create_app({settings.mlflow_tracking_uri!r}, "
        f"'global_from_regional', {version!r})"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
         # One gunicorn, a worker per core, no proxy in front.
         "--workers", str(os.cpu_count() or 1), "--worker-class", "gthread",
         "--threads", str(gunicorn_conf.threads), "--keep-alive", str(gunicorn_conf.keepalive),
         "--timeout", str(gunicorn_conf.timeout), "--no-control-socket", factory],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def table(service: dict[str, Stats], original: dict[str, Stats]) -> str:
    """Both designs side by side: medians (min–max over the runs)."""
    rows = [
        [label, r["p50_ms"].cell(), r["p99_ms"].cell(), r["requests_per_s"].cell(0),
         r["batch_rows_per_s"].cell(0)]
        for label, r in (("service (serve/)", service), ("original design", original))
    ]
    rows.append(["speed-up (medians)"] + [
        f"{ratio:.1f}x" for ratio in (
            original["p50_ms"].median / service["p50_ms"].median,
            original["p99_ms"].median / service["p99_ms"].median,
            service["requests_per_s"].median / original["requests_per_s"].median,
            service["batch_rows_per_s"].median / original["batch_rows_per_s"].median,
        )
    ])
    return markdown_table(
        ["design", "single p50 (ms)", "single p99 (ms)", "single req/s", "batch rows/s"], rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)

    from bench.marts import real_mart
    from tests.api_server import register_champions

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        home = Path(folder)
        settings = bench_settings(home)
        mart, source = real_mart(settings)
        print(f"[bench serve] training both models on the dbt-built mart ({source})", flush=True)
        versions = register_champions(settings, mart)
        generator = load.generator()
        measured: dict[str, dict[str, Stats]] = {}
        log_of = {"service": home / "service.log", "original": home / "original.log"}
        for label, starter, ready_path in (
            ("service", lambda port: start_service(settings, log_of["service"]), "/ready"),
            ("original", lambda port: start_original(settings, versions["global_from_regional"],
                                                     port, log_of["original"]), None),
        ):
            port = settings.api_port
            process = starter(port)
            try:
                if ready_path:
                    wait_ready(port, process, ready_path)
                else:
                    _wait_listening(port, process)
                print(f"[bench serve] driving the {label} on port {port} ({generator})", flush=True)
                measured[label] = measure(port, args.seconds, args.repeats, args.connections)
            except Exception:
                print(log_of[label].read_text()[-3000:], file=sys.stderr)
                raise
            finally:
                stop(process)
        _clean_stream(settings)
    service, original = measured["service"], measured["original"]
    speedup = service["requests_per_s"].median / original["requests_per_s"].median
    goals = {
        "no_failed_requests": sum(service["failed_requests"].runs) == 0,
        "p50_ms": service["p50_ms"].median <= GOALS["p50_ms"],
        "requests_per_s": service["requests_per_s"].median >= GOALS["requests_per_s"],
        "batch_rows_per_s": service["batch_rows_per_s"].median >= GOALS["batch_rows_per_s"],
        "speedup": speedup >= GOALS["speedup"],
    }
    print()
    print(table(service, original))
    print()
    for goal, met in goals.items():
        print(f"- goal {goal} ({GOALS[goal]:,}): {'met' if met else 'NOT met'}")
    path = write_results("serve", {
        "machine": machine(),
        "load_generator": generator,
        "connections": args.connections,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "batch_rows": BATCH_ROWS,
        "gunicorn": {"instances": settings.api_instances,
                     "workers_per_instance": workers_per_instance(settings),
                     "worker_class": gunicorn_conf.worker_class, "threads": gunicorn_conf.threads},
        "service": service,
        "original": original,
        "speedup": speedup,
        "goals": goals,
    })
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    body = json.dumps(SINGLE).encode()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"original design on port {port} exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"original design on port {port} not answering after {timeout:.0f} s")


def _clean_stream(settings: Settings) -> None:
    import redis

    from ml.monitoring.stream import STREAM

    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1).delete(STREAM)
    except redis.RedisError:
        pass


if __name__ == "__main__":
    sys.exit(main())
