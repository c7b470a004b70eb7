"""The edge under attack, for real: nginx in front of the API's gunicorn
instances (the session's `server`, tests/system/conftest.py).

Each test replays, byte for byte on a socket, an attack that stalled the API
when gunicorn parsed requests itself (a worker class of our own): a chunk
size of -6; a chunk-size line longer than 32 bytes, trickled; a head over
64 KiB without its blank line, trickled; bodies announced at 2,000,000 bytes
on kept-alive connections; 20 connections each sending 1 MB of 1-byte
chunks; pipelined requests; about 2,100 idle connections. Throughout each, a
process of its own probes `/health` on a new connection every 0.2 s, each
probe with a 1 s timeout: every probe must be answered 200. An instance
killed under load is tests/system/test_scale_out.py's (with every other part
running).
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.edge import limits
from tests.api_server import Server, call, read_all, waiting

pytestmark = pytest.mark.slow

PROBE_SECONDS = 0.2
PROBE_TIMEOUT = 1.0
VALID = {"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.0,
         "EU_Sales": 0.5, "JP_Sales": 0.1, "Other_Sales": 0.1}
POST_HEAD = (b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
CHUNKED_HEAD = POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
# The same, asking the server to close after answering (the test reads to the end).
CLOSING_CHUNKED_HEAD = POST_HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
# Prints one line per probe: the status, or the error.
PROBER = """
import http.client, sys, time
port, every, timeout = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
while True:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        print(connection.getresponse().status, flush=True)
    except OSError as error:
        print("error", type(error).__name__, error, flush=True)
    finally:
        connection.close()
    time.sleep(max(0.0, every - (time.monotonic() - started)))
"""


@contextlib.contextmanager
def probing(port: int, tmp_path: Path) -> Iterator[None]:
    """Probe /health all through the block; then every probe must have been
    answered 200 (within its own timeout), and there must have been some."""
    out = tmp_path / f"probes-{time.monotonic_ns()}.txt"
    prober = subprocess.Popen(
        [sys.executable, "-c", PROBER, str(port), str(PROBE_SECONDS), str(PROBE_TIMEOUT)],
        stdout=out.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not out.read_text():
            assert prober.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        started = time.monotonic()
        yield
        # At least a second of probes after the attack.
        time.sleep(max(1.0, 3 * PROBE_SECONDS - (time.monotonic() - started)))
    finally:
        prober.terminate()
        prober.wait(timeout=10)
    probes = out.read_text().splitlines()
    assert len(probes) >= 5, probes
    failed = [p for p in probes if p != "200"]
    assert not failed, f"{len(failed)} of {len(probes)} /health probes failed: {failed[:5]}"


def connect(port: int, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of each HTTP/1.1 answer in `data`, in order."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", len(rest)))
        found.append((int(lines[0].split(" ", 2)[1]), headers, rest[:length]))
        data = rest[length:]
    return found


def error_of(data: bytes) -> tuple[int, str]:
    """Status and error code of the one answer in `data`, in the API's shape."""
    [(status, headers, body)] = responses(data)
    assert headers["content-type"] == "application/json", (status, headers, body)
    answer = json.loads(body)
    assert set(answer) == {"error", "message", "detail", "request_id"}, answer
    return status, answer["error"]


def trickle(sockets: list[socket.socket], data: bytes, every: float) -> dict[int, bytes]:
    """Send `data` a piece per socket every `every` seconds (a piece is 1/64th,
    at least a byte); then what each socket was answered, by index. A socket
    the server refuses or closes stops there."""
    step = max(1, len(data) // 64)
    live = dict(enumerate(sockets))
    answers: dict[int, bytes] = {}
    for start in range(0, len(data), step):
        for index, sock in list(live.items()):
            try:
                sock.sendall(data[start:start + step])
            except OSError:
                del live[index]
        time.sleep(every)
    for index, sock in enumerate(sockets):
        sock.settimeout(limits.CLIENT_TIMEOUT_SECONDS + 5)
        answers[index] = read_all(sock)
        sock.close()
    return answers


# -- the attacks ---------------------------------------------------------------------


def test_a_negative_chunk_size_is_refused(server: Server, tmp_path):
    with probing(server.port, tmp_path):
        answers = []
        for _ in range(8):  # four used to stop /health until gunicorn killed the workers
            with connect(server.port) as sock:
                sock.sendall(CHUNKED_HEAD + b"-6\r\n")
                answers.append(read_all(sock))
    assert [error_of(a) for a in answers] == [(400, "bad_request")] * 8


def test_a_long_chunk_size_line_trickled_holds_no_thread(server: Server, tmp_path):
    """16 connections trickle a 40-digit chunk size (1, after 39 zeros); the
    chunk then arrives whole and the API answers each request itself."""
    line = b"0" * 39 + b"1\r\nx\r\n0\r\n\r\n"
    with probing(server.port, tmp_path):
        sockets = [connect(server.port) for _ in range(16)]
        for sock in sockets:
            sock.sendall(CLOSING_CHUNKED_HEAD)
        answers = trickle(sockets, line, every=0.1)
    # The app's refusal (the body "x" is not JSON): nginx passed the request on.
    assert {error_of(a) for a in answers.values()} == {(400, "invalid_json")}


def test_a_head_over_64_kib_trickled_without_its_end_is_refused(server: Server, tmp_path):
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Pad-%02d: %s\r\n" % (i, b"a" * 1000) for i in range(66))
    assert len(head) > 64 * 1024
    with probing(server.port, tmp_path):
        sockets = [connect(server.port) for _ in range(16)]
        answers = trickle(sockets, head, every=0.1)
    assert {error_of(a) for a in answers.values()} == {(431, "request_header_fields_too_large")}


def test_bodies_announced_too_large_are_refused_at_once(server: Server, tmp_path):
    """`Content-Length: 2000000` on kept-alive connections: answered 413
    without reading the body, the connection closed."""
    head = POST_HEAD + b"Content-Length: 2000000\r\n\r\n"
    with probing(server.port, tmp_path):
        sockets = [connect(server.port) for _ in range(16)]
        for sock in sockets:
            sock.sendall(head)
        answers = [read_all(sock) for sock in sockets]
        for sock in sockets:
            sock.close()
    for answer in answers:
        assert error_of(answer) == (413, "request_entity_too_large")
        assert responses(answer)[0][1]["connection"] == "close"


def test_a_megabyte_of_one_byte_chunks_on_20_connections(server: Server, tmp_path):
    """Each body reaches the API whole, once (the app refuses it: not JSON)."""
    body = b"1\r\nx\r\n" * 1_000_000 + b"0\r\n\r\n"
    answers: list[bytes] = [b""] * 20

    def send(index: int) -> None:
        with connect(server.port, timeout=120) as sock:
            sock.sendall(CLOSING_CHUNKED_HEAD + body)
            answers[index] = read_all(sock)

    with probing(server.port, tmp_path):
        senders = [threading.Thread(target=send, args=(i,)) for i in range(20)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=300)
    assert [error_of(a) for a in answers] == [(400, "invalid_json")] * 20


def test_pipelined_requests_are_answered_in_order(server: Server):
    predict = json.dumps(VALID).encode()
    forecast = json.dumps({"platform": "Wii", "genre": "Racing", "publisher": "Nintendo",
                           "year": 2008}).encode()
    invalid = json.dumps({**VALID, "Year": 3000}).encode()

    def post(path: str, body: bytes, request_id: str, last: bool = False) -> bytes:
        close = b"Connection: close\r\n" if last else b""
        return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Request-ID: %s\r\nContent-Length: %d\r\n%s\r\n%s"
                % (path.encode(), request_id.encode(), len(body), close, body))

    requests = (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipe-0\r\n\r\n"
                + post("/predict", predict, "pipe-1") + post("/v1/forecast", forecast, "pipe-2")
                + post("/predict", invalid, "pipe-3")
                + b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Request-ID: pipe-4\r\n\r\n"
                + post("/predict", predict, "pipe-5", last=True))
    with connect(server.port) as sock:
        sock.sendall(requests)  # all at once, before any answer
        answered = responses(read_all(sock))
    assert [h["x-request-id"] for _, h, _ in answered] == [f"pipe-{i}" for i in range(6)]
    assert [status for status, _, _ in answered] == [200, 200, 200, 422, 200, 200]
    assert "global_sales" in json.loads(answered[5][2])


def test_2100_idle_connections_leave_the_api_reachable(server: Server, tmp_path):
    wanted = 2100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted + 1000), hard))
    idle: list[socket.socket] = []
    try:
        with probing(server.port, tmp_path):
            opened = time.monotonic()
            idle = [connect(server.port) for _ in range(wanted)]
            assert call(server.port, "POST", "/predict", VALID).status == 200
            time.sleep(2)
        # They were all held open meanwhile (nginx closes them only once its
        # header timeout has passed).
        assert time.monotonic() - opened < limits.CLIENT_TIMEOUT_SECONDS
        assert all(waiting(sock) for sock in idle)
    finally:
        for sock in idle:
            sock.close()
