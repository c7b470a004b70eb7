"""Benchmark: normal requests while slow clients hold connections open.

    python -m bench.bench_slow_clients [--requests 300] [--repeats 3] [--slow 100]

Starts the service (`python -m serve`: nginx in front of the instances) on a
registry with `global_from_regional` trained on a synthetic sample, then
times single `POST /predict` requests on one keep-alive connection, first
with nothing else going on, then while `--slow` connections trickle a
request a byte per second (re-opened whenever the server closes one, so
the attack lasts the whole phase). Prints both phases side by side, the
p50 and p99 latency medians over `--repeats` runs and their ratio, and
writes bench/results/slow_clients.json. Failed requests must be none.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

from bench.bench_serve import SINGLE, bench_settings, start_service, stop, wait_ready
from bench.common import Stats, machine, write_results
from ml.markdown import markdown_table
from ml.settings import ROOT
from serve.edge import limits

MODEL = "global_from_regional"
SAMPLE_ROWS = 3000
BODY = json.dumps(SINGLE).encode()
SLOW_HEAD = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(BODY))


class SlowClients:
    """`count` connections each sending a request a byte per second."""

    def __init__(self, port: int, count: int) -> None:
        self._port, self._count = port, count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.reopened = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _open(self) -> tuple[socket.socket, int]:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=5)
        sock.sendall(SLOW_HEAD[:1])
        return sock, 1

    def _run(self) -> None:
        whole = SLOW_HEAD + BODY
        clients = [self._open() for _ in range(self._count)]
        while not self._stop.wait(1.0):
            for i, (sock, sent) in enumerate(clients):
                try:
                    sock.sendall(whole[sent:sent + 1])
                    clients[i] = (sock, sent + 1)
                except OSError:  # closed by the server (a gap over its client timeout)
                    sock.close()
                    clients[i] = self._open()
                    self.reopened += 1
        for sock, _ in clients:
            sock.close()


def timed_requests(port: int, count: int) -> tuple[list[float], int]:
    """Latencies (ms) of `count` predictions on one keep-alive connection."""
    latencies, failed = [], 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(count):
        started = time.perf_counter()
        try:
            connection.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            failed += response.status != 200
        except OSError:
            failed += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append((time.perf_counter() - started) * 1000)
    connection.close()
    return latencies, failed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(port: int, requests: int, repeats: int, slow: int | None) -> dict[str, Stats]:
    p50, p99, failed = [], [], []
    for _ in range(repeats):
        if slow:
            with SlowClients(port, slow):
                time.sleep(2)  # every slow connection open and trickling
                latencies, errors = timed_requests(port, requests)
        else:
            latencies, errors = timed_requests(port, requests)
        p50.append(percentile(latencies, 0.5))
        p99.append(percentile(latencies, 0.99))
        failed.append(errors)
    return {"p50_ms": Stats.of(p50), "p99_ms": Stats.of(p99), "failed_requests": Stats.of(failed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", type=int, default=100)
    args = parser.parse_args(argv)

    from bench.marts import real_mart
    from tests.api_server import register_champions

    with tempfile.TemporaryDirectory(prefix="bench-slow-") as folder:
        home = Path(folder)
        settings = bench_settings(home)
        mart, source = real_mart(settings)
        print(f"[bench slow_clients] training {MODEL} on {SAMPLE_ROWS:,} rows of the "
              f"dbt-built mart ({source})", flush=True)
        sample = mart.sample(SAMPLE_ROWS, random_state=0).sort_values("release_id")
        register_champions(settings, sample, models=(MODEL,))
        log = home / "service.log"
        process = start_service(settings, log)
        try:
            wait_ready(settings.api_port, process, "/health")
            while timed_requests(settings.api_port, 1)[1]:  # until the model is served
                time.sleep(0.5)
            quiet = measure(settings.api_port, args.requests, args.repeats, None)
            print(f"[bench slow_clients] {args.slow} slow clients", flush=True)
            attacked = measure(settings.api_port, args.requests, args.repeats, args.slow)
        except Exception:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            stop(process)
    rows = [[label, r["p50_ms"].cell(), r["p99_ms"].cell(), str(sum(r["failed_requests"].runs))]
            for label, r in (("quiet", quiet), (f"{args.slow} slow clients", attacked))]
    rows.append(["ratio (medians)", *(
        f"{attacked[k].median / quiet[k].median:.1f}x" for k in ("p50_ms", "p99_ms")), ""])
    print()
    print(markdown_table(["phase", "p50 (ms)", "p99 (ms)", "failed"], rows))
    path = write_results("slow_clients", {
        "machine": machine(), "requests": args.requests, "repeats": args.repeats,
        "slow_clients": args.slow, "client_timeout_seconds": limits.CLIENT_TIMEOUT_SECONDS,
        "quiet": quiet, "attacked": attacked,
    })
    print(f"\nwrote {path.relative_to(ROOT)}")
    failed = sum(quiet["failed_requests"].runs) + sum(attacked["failed_requests"].runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
