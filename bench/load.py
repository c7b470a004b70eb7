"""The load generator the benchmarks (and the kill -9 test) drive the API with.

`drive` keeps `connections` keep-alive connections busy with one POST for
`seconds`: wrk when it is installed, else a multi-process Python client
(http.client, one process per connection). Both count what came back: 2xx
answers, other answers, and socket errors (connect, read, write, timeout).
"""

from __future__ import annotations

import dataclasses
import http.client
import multiprocessing
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A request unanswered this long counts as a socket error (timeout).
TIMEOUT_SECONDS = 10


@dataclasses.dataclass
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    answered_2xx: int
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        """Failed requests: non-2xx answers and socket errors."""
        return self.non_2xx + self.socket_errors


def generator() -> str:
    """The load generator `drive` uses on this machine."""
    return "wrk" if shutil.which("wrk") else "python http.client"


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
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
             "--timeout", f"{TIMEOUT_SECONDS}s", "--latency", "-s", str(script),
             f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout
    percentiles = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = int(non_2xx.group(1)) if non_2xx else 0
    socket_errors = sum(int(x) for x in sockets.groups()) if sockets else 0
    if non_2xx or socket_errors:
        print(f"[bench] wrk reported errors on {path}:\n{out}", file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return Run(rps, percentiles["50"], percentiles["99"], total - non_2xx, non_2xx,
               socket_errors)


def _client(args: tuple) -> tuple[list[float], int, int]:
    port, path, body, seconds = args
    headers = {"Content-Type": "application/json"}
    latencies, non_2xx, socket_errors = [], 0, 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
        except OSError:
            socket_errors += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
            continue
        latencies.append((time.perf_counter() - start) * 1e3)
        non_2xx += not 200 <= response.status < 300
    connection.close()
    return latencies, non_2xx, socket_errors


def _python_client(port: int, path: str, body: bytes, seconds: float, connections: int) -> Run:
    with multiprocessing.Pool(connections) as pool:
        results = pool.map(_client, [(port, path, body, seconds)] * connections)
    latencies = sorted(x for lat, _, _ in results for x in lat)
    non_2xx = sum(n for _, n, _ in results)
    return Run(
        len(latencies) / seconds,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
        len(latencies) - non_2xx,
        non_2xx,
        sum(e for _, _, e in results),
    )
