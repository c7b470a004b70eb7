"""Benchmark: the prediction service against the original design, on loopback.

    python -m bench.bench_serve [--seconds 5] [--repeats 3] [--connections 4]

Trains both models on the mart dbt builds from the real vgsales.csv (or a
synthetic file of its size; `bench.marts.real_mart`) into a private MLflow
registry, as the pipeline does (fit, evaluate, register), starts the service
(`python -m serve`, its gunicorn configuration) and the original design
(`bench/original_app.py`, same gunicorn workers and threads, same model
version), then drives each with wrk (or, when wrk is not installed, a
multi-process keep-alive Python client):

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
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Stats, machine, markdown_table, write_results
from ml.settings import ROOT, Settings, load_settings
from serve import gunicorn_conf

REDIS_DB = 6
BATCH_ROWS = 1000
GOALS = {"no_failed_requests": 0, "p50_ms": 2.0, "requests_per_s": 1500, "batch_rows_per_s": 100_000, "speedup": 3.0}
SINGLE = {
    "Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.2,
    "EU_Sales": 0.9, "JP_Sales": 0.1, "Other_Sales": 0.2,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


# -- load generators ---------------------------------------------------------------


@dataclasses.dataclass
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def drive(port: int, path: str, body: bytes, seconds: float, connections: int) -> Run:
    """Keep `connections` keep-alive connections busy for `seconds`."""
    if shutil.which("wrk"):
        return _wrk(port, path, body, seconds, connections)
    return _python_client(port, path, body, seconds, connections)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(port: int, path: str, body: bytes, seconds: float, connections: int) -> Run:
    with tempfile.TemporaryDirectory() as folder:
        (folder_path := Path(folder) / "body.json").write_bytes(body)
        script = Path(folder) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{folder_path}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        )
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
             "--latency", "-s", str(script),
             f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout
    percentiles = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(x) for x in socket_errors.groups()) if socket_errors else 0
    if errors:
        print(f"[bench serve] wrk reported errors on {path}:\n{out}", file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return Run(rps, percentiles["50"], percentiles["99"], errors)


def _client(args: tuple) -> tuple[list[float], int]:
    port, path, body, seconds = args
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - start) * 1e3)
        errors += response.status != 200
    return latencies, errors


def _python_client(port: int, path: str, body: bytes, seconds: float, connections: int) -> Run:
    with multiprocessing.Pool(connections) as pool:
        results = pool.map(_client, [(port, path, body, seconds)] * connections)
    latencies = sorted(x for lat, _ in results for x in lat)
    return Run(
        len(latencies) / seconds,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
        sum(e for _, e in results),
    )


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
    base = load_settings()
    return dataclasses.replace(
        base,
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "artifacts"),
        redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}",
        api_port=free_port(),
    )


def start_service(settings: Settings, log: Path) -> subprocess.Popen:
    env = {**os.environ, **settings.as_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "serve", "--port", str(settings.api_port)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def start_original(settings: Settings, version: str, port: int, log: Path) -> subprocess.Popen:
    factory = (
        f"bench.original_app:create_app({settings.mlflow_tracking_uri!r}, "
        f"'global_from_regional', {version!r})"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
         # Stock gthread: the original design had no buffering worker.
         "--workers", str(gunicorn_conf.workers), "--worker-class", "gthread",
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
        generator = "wrk" if shutil.which("wrk") else "python http.client"
        measured: dict[str, dict[str, Stats]] = {}
        log_of = {"service": home / "service.log", "original": home / "original.log"}
        for label, starter, ready_path in (
            ("service", lambda port: start_service(dataclasses.replace(settings, api_port=port),
                                                   log_of["service"]), "/ready"),
            ("original", lambda port: start_original(settings, versions["global_from_regional"],
                                                     port, log_of["original"]), None),
        ):
            port = free_port()
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
        "gunicorn": {"workers": gunicorn_conf.workers, "worker_class": gunicorn_conf.worker_class,
                     "threads": gunicorn_conf.threads},
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
