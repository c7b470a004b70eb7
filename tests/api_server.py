"""The prediction API as its users meet it: champions trained on the mart dbt
builds, served as `make serve` serves them (`python -m serve`: nginx in front
of API_INSTANCES gunicorn instances), called over HTTP.

Shared by the system tests (tests/system) and the golden-file generator
(`python -m tests.system.api_golden`), which must train and start the API
the same way the tests do.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml.features import MODEL_NAMES
from ml.modeling.names import NameReference
from ml.settings import ROOT, Settings
from serve.edge.limits import instance_ports, workers_per_instance

# The admin token of the APIs tests start.
ADMIN_TOKEN = "test-admin-token"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(port: int, method: str, path: str, body=None, headers=None) -> Response:
    """One request on a new connection (so requests spread over workers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(
            method, path, data, {"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        return Response(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends on `sock` until it closes (or resets) it."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def waiting(sock: socket.socket) -> bool:
    """Whether `sock` is open with nothing from the server on it yet."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False


@dataclass
class Server:
    """A running API and what it was trained on."""

    port: int
    settings: Settings
    frame: pd.DataFrame
    process: subprocess.Popen
    log: Path

    def call(self, method: str, path: str, body=None, headers=None) -> Response:
        """One request on a new connection (so requests spread over workers)."""
        return call(self.port, method, path, body, headers)


def register_champions(
    settings: Settings,
    frame: pd.DataFrame,
    *,
    models: tuple[str, ...] = MODEL_NAMES,
    platforms: pd.DataFrame | None = None,
    names: NameReference | None = None,
) -> dict[str, str]:
    """Train each model on the mart `frame` as the pipeline flow does (fit,
    evaluate, register with the frame's Redis snapshot named in the run) and
    make the new version the champion, whatever the gate decided: a test
    serves what it just trained. `platforms` is the warehouse's platform
    reference (`ml.warehouse.mart.read_platforms`), as the pipeline passes it;
    without it only platforms with rows in `frame` are described. `names` is
    the name reference (`ml_written_names`), also as the pipeline passes it;
    without it names match by case only. Returns the version of each model.
    """
    from ml.modeling import champions
    from ml.modeling.evaluate import evaluate
    from ml.modeling.registry import register
    from ml.modeling.train import fit
    from ml.warehouse import snapshot

    redis_client = snapshot.connect(settings.redis_url)
    try:
        key = snapshot.publish(redis_client, frame, snapshot.DEFAULT_TTL_SECONDS)
    finally:
        redis_client.close()
    versions = {}
    for name in models:
        fitted = fit(name, frame, platforms, names)
        registration = register(
            fitted, evaluate(fitted, frame, platforms), settings, {"snapshot_key": key}
        )
        version = str(registration.version)
        champions.client(settings).set_registered_model_alias(name, champions.CHAMPION, version)
        versions[name] = version
    return versions


def start(
    settings: Settings, log: Path, source: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`python -m serve` from the checkout at `source`: nginx on
    `settings.api_port`, the instances from `settings.api_instance_port` (see
    `tests.helpers.free_api_ports`), with `env` added to its environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "serve", "--port", str(settings.api_port)],
        cwd=source,
        env={**os.environ, **settings.as_env(), "PYTHONPATH": str(source), **(env or {})},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def instance_metrics(settings: Settings) -> str:
    """Every instance's /metrics, one after the other: asked through nginx,
    /metrics speaks for the one instance that answers, so each is asked on
    its own port (as Prometheus would scrape them)."""
    texts = []
    for port in instance_ports(settings):
        try:
            texts.append(call(port, "GET", "/metrics").body.decode())
        except OSError:
            texts.append("")
    return "".join(texts)


def served_versions(port: int, model: str = "prerelease") -> dict[str, str]:
    """Worker pid -> version of `model` it serves, from one instance's /metrics
    (asked on its own port: through nginx, /metrics speaks for one instance)."""
    try:
        text = call(port, "GET", "/metrics").body.decode()
    except OSError:
        return {}
    return dict(re.findall(rf'vgsales_model_version\{{model="{model}",pid="(\d+)"\}} (\S+)', text))


def wait_every_worker_serving(
    settings: Settings, process: subprocess.Popen, log: Path, timeout: float = 300
) -> None:
    """Until every worker of every instance serves both models (one /ready
    only speaks for one worker) and nginx answers."""
    ports = instance_ports(settings)
    workers = workers_per_instance(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-5000:]
        if all(len(served_versions(port)) == workers for port in ports):
            try:
                if call(settings.api_port, "GET", "/health").status == 200:
                    return
            except OSError:
                pass
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout} s:\n{log.read_text()[-5000:]}")


def predictions_answered(port: int) -> float:
    """`/predict` requests the instance on `port` answered 200, all its workers."""
    text = call(port, "GET", "/metrics").body.decode()
    return sum(float(v) for v in re.findall(
        r'^vgsales_http_requests_total\{endpoint="/predict",method="POST",status="200"\} (\S+)$',
        text, re.M))


def instance_master(settings: Settings, port: int) -> int:
    """The pid of the gunicorn master of the instance on `port` (it writes it
    into its lock file, serve/gunicorn_conf.py)."""
    return int((settings.run_dir / "serve" / f"{port}.lock").read_text())


def kill_instance(settings: Settings, port: int) -> list[int]:
    """kill -9 the master and workers of the instance on `port`; their pids."""
    master = instance_master(settings, port)
    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    for pid in (*workers, master):
        os.kill(pid, signal.SIGKILL)
    return [*workers, master]


def wait_rejoined(settings: Settings, port: int, killed: list[int], body: dict,
                  timeout: float) -> float:
    """After `kill_instance`: until the instance on `port`, restarted by the
    launcher with its models loaded, answers predictions sent through nginx
    (which tries it again once it has been left out for a while). Returns
    the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while not (instance_master(settings, port) not in killed
               and len(served_versions(port)) == workers_per_instance(settings)):
        assert time.monotonic() < deadline, f"the instance on {port} did not come back"
        time.sleep(0.5)
    before = predictions_answered(port)
    while predictions_answered(port) == before:
        assert time.monotonic() < deadline, f"nginx sent the instance on {port} nothing"
        assert call(settings.api_port, "POST", "/predict", body).status == 200
        time.sleep(0.1)
    return time.monotonic() - started


def stop(process: subprocess.Popen) -> None:
    """Stop nginx and the instances, and wait for the instances to clean up."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
