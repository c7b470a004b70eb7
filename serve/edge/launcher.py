"""The API as it is served: API_INSTANCES gunicorn instances with nginx in front.

`Edge.run` starts every instance (`python -m serve.instance`) on its
loopback port, then nginx on API_PORT once every instance answers (a request
nginx sent before would find none listening, and nginx would leave every
instance out for FAILED_INSTANCE_SECONDS), says where the API is once nginx
listens, restarts an instance that dies (a crash, a kill -9) while
nginx sends its requests to the others, and stops everything on SIGINT,
SIGTERM or SIGHUP: nginx first, gracefully (requests in flight are
answered), then the instances. Its children are told to stop when it dies
(PR_SET_PDEATHSIG), so a killed launcher leaves no server behind.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ml.settings import Settings
from serve.edge import limits, nginx

POLL_SECONDS = 0.2
# Waits before restarting an instance that died, longer after each death
# that came before it answered again.
RESTART_SECONDS = (0.5, 1, 2, 5, 10, 30)
# Before the API first answers, an instance that dies this many times in a
# row without answering ends the start: it will not come up by itself.
START_ATTEMPTS = 4
# How long each part may take to stop before it is killed.
STOP_SECONDS = 35


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM when the launcher dies.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def answers(port: int, path: str = "/health") -> bool:
    """Whether 127.0.0.1:`port` answers `GET path` with 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def listens(host: str, port: int) -> bool:
    """Whether `host`:`port` accepts a connection (0.0.0.0 and :: are asked on loopback)."""
    address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class Instance:
    """One gunicorn instance and what the launcher knows of it."""

    port: int
    process: subprocess.Popen | None = None
    answered: bool = False  # since its last start
    deaths: int = 0  # in a row, without answering in between
    restart_at: float | None = None


class Edge:
    """nginx on `settings.api_port` in front of the instances."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", *, app: str | None = None,
                 report: Path | None = None) -> None:
        self.settings = settings
        self.host = host
        self.app = app
        self.report = report
        self.instances = [Instance(port) for port in limits.instance_ports(settings)]
        self.nginx: subprocess.Popen | None = None
        self._stopping = False

    def run(self) -> int:
        """Serve until a signal says stop; 0 then, 1 when a part could not run."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._stop_requested)
        try:
            for instance in self.instances:
                self._start(instance)
            return self._supervise()
        finally:
            self._stop_all()

    def _stop_requested(self, signum, frame) -> None:
        self._stopping = True

    def _start(self, instance: Instance) -> None:
        command = [sys.executable, "-m", "serve.instance", "--port", str(instance.port)]
        if self.app:
            command += ["--app", self.app]
        instance.process = subprocess.Popen(command, preexec_fn=_die_with_parent)
        instance.answered = False
        instance.restart_at = None

    def _start_nginx(self) -> None:
        upstreams = [("127.0.0.1", instance.port) for instance in self.instances]
        config = nginx.write_config(f"{self.host}:{self.settings.api_port}", upstreams,
                                    nginx.prefix_of(self.settings))
        # nginx needs none of the settings, secrets least of all.
        environment = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        self.nginx = subprocess.Popen(nginx.command(config), env=environment,
                                      preexec_fn=_die_with_parent)

    def _supervise(self) -> int:
        announced = False
        while not self._stopping:
            # Ctrl-C reaches nginx and the instances too: once a signal says
            # stop, their exits are expected, not failures to act on.
            if self.nginx is not None and self.nginx.poll() is not None and not self._stopping:
                return self._fail(f"nginx exited with {self.nginx.returncode}")
            for instance in self.instances:
                problem = None if self._stopping else self._watch(instance, announced)
                if problem:
                    return self._fail(problem)
            if not announced and all(i.answered for i in self.instances):
                if self.nginx is None:
                    self._start_nginx()
                if listens(self.host, self.settings.api_port):
                    print(self.where(), file=sys.stderr, flush=True)
                    announced = True
            time.sleep(POLL_SECONDS)
        return 0

    def _watch(self, instance: Instance, announced: bool) -> str | None:
        """Check one instance, restarting it when it is due; a problem that
        ends the edge (an instance that cannot start), or None."""
        now = time.monotonic()
        if instance.restart_at is not None:
            if now >= instance.restart_at:
                self._log(f"restarting the instance on port {instance.port}")
                self._start(instance)
            return None
        code = instance.process.poll()
        if code is None:
            if not instance.answered and answers(instance.port):
                instance.answered, instance.deaths = True, 0
                if announced:
                    self._log(f"the instance on port {instance.port} answers again")
            return None
        if not announced and instance.deaths + 1 >= START_ATTEMPTS:
            return (f"the instance on port {instance.port} exited with {code}, "
                    f"{START_ATTEMPTS} times without answering")
        delay = RESTART_SECONDS[min(instance.deaths, len(RESTART_SECONDS) - 1)]
        instance.deaths += 1
        instance.restart_at = now + delay
        self._log(f"the instance on port {instance.port} exited with {code}; nginx sends its "
                  f"requests to the others; restarting it in {delay:g} s")
        return None

    def where(self) -> str:
        """The one line that says where everything is."""
        base = f"http://{self.host}:{self.settings.api_port}"
        ports = [i.port for i in self.instances]
        if self.report is None:
            report = ""
        elif self.report.is_file():
            report = f"; report: {self.report}"
        else:
            report = f"; report: not built yet ({self.report}: make pipeline or make report)"
        return (f"[serve] API: {base} (docs: {base}/docs){report} -- nginx in front of "
                f"{len(ports)} instance(s) on 127.0.0.1:{ports[0]}-{ports[-1]}; Ctrl-C stops it")

    def _fail(self, problem: str) -> int:
        self._log(f"error: {problem}; stopping")
        return 1

    def _log(self, message: str) -> None:
        print(f"[serve] {message}", file=sys.stderr, flush=True)

    def _stop_all(self) -> None:
        # nginx first, so that no new request reaches an instance that stops.
        _signal(self.nginx, signal.SIGQUIT)
        _wait(self.nginx)
        for instance in self.instances:
            _signal(instance.process, signal.SIGTERM)
        for instance in self.instances:
            _wait(instance.process)


def _signal(process: subprocess.Popen | None, signum: int) -> None:
    if process is not None and process.poll() is None:
        try:
            process.send_signal(signum)
        except ProcessLookupError:
            pass


def _wait(process: subprocess.Popen | None) -> None:
    """Wait for `process` to exit; kill it after STOP_SECONDS."""
    if process is None:
        return
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
