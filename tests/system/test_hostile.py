"""Hostile clients and a tampered store, against the API run for real.

The API as `make serve` runs it (`python -m serve`: nginx in front of its
gunicorn instances) on a registry of its own (both models trained on a
sample of the mart, Redis db 13). Each test reproduces an attack and passes
because the attack fails: slow clients, request quirks (content type,
duplicate keys, chunked size, malformed HTTP, request smuggling), unbounded
metric labels, internals in public answers and, last because it changes the
champion, a tampered model artifact. (The attacks that once stalled the API
itself: tests/system/test_edge.py.)
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from mlflow import MlflowClient

from ml.modeling import champions
from ml.settings import ROOT, Settings
from serve import schemas
from serve.edge import limits
from serve.edge.limits import instance_ports
from tests.api_server import (
    call,
    instance_metrics,
    read_all,
    register_champions,
    start,
    wait_every_worker_serving,
    waiting,
)
from tests.helpers import free_api_ports, isolated_settings

pytestmark = pytest.mark.slow

REDIS_DB = 13
SAMPLE_ROWS = 1200
TOKEN = "hostile-admin-token"
REGIONAL = "global_from_regional"
VALID = {"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.0,
         "EU_Sales": 0.5, "JP_Sales": 0.1, "Other_Sales": 0.1}
SLOW_CLIENTS = 100


@dataclasses.dataclass
class Server:
    settings: Settings
    process: subprocess.Popen
    log: Path
    home: Path

    @property
    def port(self) -> int:
        return self.settings.api_port

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body, headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def post_json(self, path: str, payload, **headers) -> tuple[int, dict]:
        status, _, body = self.call("POST", path, json.dumps(payload).encode(),
                                    {"Content-Type": "application/json", **headers})
        return status, json.loads(body)

    def raw(self, data: bytes, timeout: float = 60) -> bytes:
        """Send `data` as is; everything the server answers until it closes.
        (Not half-closed after sending: nginx takes that for a client gone.)"""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            return read_all(sock)


@pytest.fixture(scope="module")
def server(stack_settings, built_mart, tmp_path_factory) -> Server:
    home = tmp_path_factory.mktemp("hostile")
    settings = dataclasses.replace(
        free_api_ports(isolated_settings(stack_settings, "hostile", REDIS_DB, home)),
        api_admin_token=TOKEN,
    )
    redis.Redis.from_url(settings.redis_url).flushdb()
    # A sample of the mart dbt built keeps the fits short; the rules are the mart's.
    frame = built_mart.sample(SAMPLE_ROWS, random_state=9).sort_values("release_id")
    register_champions(settings, frame)
    log = home / "gunicorn.log"
    process = start(settings, log)
    try:
        wait_every_worker_serving(settings, process, log)
        yield Server(settings, process, log, home)
    finally:
        process.terminate()
        process.wait(timeout=60)


def error_of(response: bytes) -> tuple[int, dict]:
    """Status and JSON body of a raw HTTP/1.1 answer."""
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), response[:300]
    return status, json.loads(body)


# -- strict requests -----------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_post_bodies_must_be_declared_json(server, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, _, body = server.call("POST", "/predict", json.dumps(VALID).encode(), headers)
    assert status == 415, body
    assert json.loads(body)["error"] == "unsupported_media_type"


def test_json_with_a_charset_is_json(server):
    status, body = server.post_json("/predict", VALID)
    assert status == 200, body
    status, _, body = server.call("POST", "/predict", json.dumps(VALID).encode(),
                                  {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200, body


def test_duplicate_keys_are_refused(server):
    once = json.dumps(VALID)
    twice = once[:-1] + ', "Year": 1990}'
    status, _, body = server.call("POST", "/predict", twice.encode(),
                                  {"Content-Type": "application/json"})
    assert status == 422, body
    answer = json.loads(body)
    assert answer["error"] == "duplicate_key"
    assert answer["detail"] == [{"field": "Year", "message": "given more than once"}]
    batch = f"[{once}, {twice}]".encode()
    status, _, body = server.call("POST", "/predict/batch", batch,
                                  {"Content-Type": "application/json"})
    assert status == 422 and json.loads(body)["error"] == "duplicate_key"


def chunked(body: bytes, size: int = 65536) -> bytes:
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_an_oversized_chunked_body_gets_413(server):
    big = json.dumps([VALID] * 20_000).encode()
    assert len(big) > schemas.MAX_BODY_BYTES
    head = (b"POST /predict/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    status, answer = error_of(server.raw(head + chunked(big)))
    assert status == 413 and answer["error"] == "request_entity_too_large", answer
    small = json.dumps([VALID] * 3).encode()
    response = server.raw(head + chunked(small, 50))
    assert response.startswith(b"HTTP/1.1 200"), response[:300]


def test_the_edge_refusals_have_the_json_shape(server):
    """What nginx refuses itself is answered in the API's error shape."""
    status, answer = error_of(server.raw(b"NOT A REQUEST LINE\r\n\r\n"))
    assert status == 400 and answer["error"] == "bad_request"
    assert set(answer) == {"error", "message", "detail", "request_id"}
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    status, answer = error_of(server.raw(huge))
    assert status in (400, 431), answer  # one field over the head buffer
    # More header fields than the head buffers hold.
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: 1\r\n" % i for i in range(5000)) + b"\r\n"
    status, answer = error_of(server.raw(many))
    assert status == 431 and answer["error"] == "request_header_fields_too_large"
    long_line = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, answer = error_of(server.raw(long_line))
    assert status == 414 and answer["error"] == "request_uri_too_long"
    status, answer = error_of(server.raw(b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n"))
    assert status == 505, answer


SMUGGLING = {
    "Content-Length and Transfer-Encoding": b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    "two Content-Lengths": b"Content-Length: 2\r\nContent-Length: 3\r\n",
    "a signed Content-Length": b"Content-Length: +2\r\n",
    "a folded header": b"Content-Length: 2\r\nX-A: 1\r\n folded\r\n",
    "a transfer coding nobody understands": b"Transfer-Encoding: chunked, identity\r\n",
}


def requests_seen(settings: Settings) -> float:
    """Requests the instances answered, all together (but /metrics itself)."""
    return sum(float(n) for n in re.findall(
        r'^vgsales_http_requests_total\{endpoint="(?!/metrics")[^}]*\} (\S+)$',
        instance_metrics(settings), re.M))


@pytest.mark.parametrize("framing", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_ambiguous_framing_is_refused_before_any_instance(server, framing):
    """Requests two parsers could frame differently never reach an instance:
    nginx refuses them, in the API's shape, and closes the connection."""
    before = requests_seen(server.settings)
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer = server.raw(head + framing + b"\r\n0\r\n\r\n")
    status, body = error_of(answer)
    assert status in (400, 501) and body["error"] in ("bad_request", "not_implemented"), body
    assert answer.count(b"HTTP/1.1 ") == 1  # nothing after it was read as a request
    assert requests_seen(server.settings) == before  # no instance saw it


# -- bounded metrics, terse answers ------------------------------------------------------


def letters(number: int) -> str:
    """`number` in base 26, A to Z (HTTP methods are letters)."""
    word = ""
    while True:
        number, digit = divmod(number, 26)
        word = chr(ord("A") + digit) + word
        if not number:
            return word


def test_made_up_methods_are_counted_as_other(server):
    before = instance_metrics(server.settings)
    for i in range(300):
        server.call(f"MADEUP{letters(i)}", "/health")
    after = instance_metrics(server.settings)
    assert "MADEUP" not in after
    counted = re.findall(r'vgsales_http_requests_total\{endpoint="unmatched",method="other",'
                         r'status="405"\} (\d+)', after)
    assert sum(int(float(n)) for n in counted) >= 300
    # 300 new methods would add 300 series; a handful of lines at most changed.
    assert len(after) - len(before) < 2000 * server.settings.api_instances
    # A method that is not a token of letters does not even reach an instance.
    status, answer = error_of(server.raw(b"X1MADEUP /health HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 400 and answer["error"] == "bad_request"


def test_public_answers_name_no_internals(server):
    status, _, body = server.call("GET", "/model")
    assert status == 200
    text = body.decode()
    models = json.loads(body)
    assert "worker_pid" not in models
    assert models["models"]["prerelease"]["point_in_time_source"] == "Redis snapshot"
    for inside in ("vgsales:mart", str(server.home), str(ROOT), "sqlite", "redis://",
                   server.settings.mariadb_reader_password.get_secret_value()):
        assert inside not in text, inside


# -- slow clients ------------------------------------------------------------------------


def test_slow_clients_cannot_stall_the_api(server):
    """100 connections trickle a request (a byte every second) while normal
    requests are answered; the slow ones are still open when they are.
    nginx holds them, not an instance: it reads each request in full first."""
    body = json.dumps(VALID).encode()
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    slow = []
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(head)
        slow.append(sock)
    stop = threading.Event()

    def trickle():
        position = 0
        while not stop.is_set() and position < len(body):
            for sock in slow:
                try:
                    sock.sendall(body[position:position + 1])
                except OSError:
                    pass
            position += 1
            stop.wait(1.0)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        answered = []
        for _ in range(10):
            answered.append(server.call("GET", "/health",
                                        timeout=limits.CLIENT_TIMEOUT_SECONDS)[0])
            answered.append(server.post_json("/predict", VALID)[0])
        # Every slow connection is still open and unanswered: the normal
        # requests were served during the attack, not after it.
        still_open = sum(waiting(sock) for sock in slow)
        assert answered == [200] * 20
        assert still_open == SLOW_CLIENTS
    finally:
        stop.set()
        sender.join()
    # Once their bytes stop for longer than the client timeout, nginx closes
    # them (it logs a 408; it sends no answer to a client that stopped).
    stopped = time.monotonic()
    for sock in slow[:5]:
        sock.settimeout(limits.CLIENT_TIMEOUT_SECONDS * 6)
        assert read_all(sock) == b""
    assert time.monotonic() - stopped < limits.CLIENT_TIMEOUT_SECONDS * 6
    for sock in slow:
        sock.close()


# -- a tampered model store (last: it moves the champion) -------------------------------------


def test_a_tampered_champion_is_refused_and_the_previous_one_kept(server, built_mart):
    status, answer = server.post_json("/predict", VALID)
    served = answer["version"]
    frame = built_mart.sample(SAMPLE_ROWS, random_state=10).sort_values("release_id")
    newer = register_champions(server.settings, frame, models=(REGIONAL,))[REGIONAL]
    client = MlflowClient(server.settings.mlflow_tracking_uri, server.settings.mlflow_tracking_uri)
    source = client.get_model_version(REGIONAL, newer).source
    folder = Path(client.get_logged_model(source.removeprefix("models:/")).artifact_location
                  .removeprefix("file://"))
    payload = bytearray((folder / champions.MODEL_FILE).read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (folder / champions.MODEL_FILE).write_bytes(bytes(payload))

    status, _, body = server.call("POST", "/admin/reload", None,
                                  {"Authorization": f"Bearer {TOKEN}"})
    reload = json.loads(body)
    assert status == 200, reload
    assert reload["current"][REGIONAL] == served
    assert any(f"{REGIONAL} version {newer}: refused: artifact digest" in p
               for p in reload["problems"]), reload
    # No instance's champions file names the refused version (nginx sent the
    # reload to each, and each refused it), so no worker, one restarted later
    # included, ever loads it; every worker keeps serving the previous one.
    for port in instance_ports(server.settings):
        pinned = json.loads((server.settings.run_dir / "serve" / str(port) / "champions.json")
                            .read_text())
        assert pinned[REGIONAL] == served
        for _ in range(5):
            ready = call(port, "GET", "/ready").json()
            assert ready["models"][REGIONAL] == served
            assert str(folder) not in json.dumps(ready)
    for _ in range(10):
        status, answer = server.post_json("/predict", VALID)
        assert status == 200 and answer["version"] == served
