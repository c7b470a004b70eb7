"""Gunicorn settings and hooks for the API, read by `python -m serve`.

Sized for a CPU-bound service: one worker per core, each with a few threads
(gthread) so keep-alive connections are held open while a request computes
and `/admin/reload` can load models without blocking the worker's other
requests. The worker class is gthread reading each request in full before
a thread sees it (`serve.worker`), so slow clients cannot hold the threads. `preload_app` stays off: every worker builds its own app after the
fork, so no MLflow/SQLite/Redis connection is ever shared across a fork (the
reload design in serve/model/state.py does not need preloading either).

After a worker has built its app, its long-lived objects are frozen out of
the garbage collector's generations (see `post_worker_init`).

The hooks own the instance directory (`.run/serve/<port>/`, see
`serve.__main__`): emptied when the master starts, so the first worker
resolves the champions afresh and Prometheus counts from zero; cleaned of
dead workers' gauges; removed when the master exits. The master first takes
`.run/serve/<port>.lock` (held until it exits): a second instance on the same
port stops there, before it could empty the directory a live one uses.
"""

from __future__ import annotations

import fcntl
import gc
import multiprocessing
import os
import shutil
from pathlib import Path

workers = multiprocessing.cpu_count()
worker_class = "serve.worker.BufferingThreadWorker"
threads = 4
# Loading a model (and `/admin/reload`) takes seconds; predictions take ms.
timeout = 60
graceful_timeout = 30
keepalive = 15
# Restart workers now and then (jittered, so not all at once) to bound leaks.
# Rarely: a restarting worker answers its last request with `Connection:
# close` and closes its idle keep-alive connections, and a client that has
# just sent a request on one of those sees a connection error (wrk counts
# one read error per restart). At full load that is every few minutes.
max_requests = 200_000
max_requests_jitter = 20_000
backlog = 2048
# No gunicornc control socket: unused, and one fixed path per user would
# collide between instances (tests run their own).
control_socket_disable = True
errorlog = "-"
loglevel = "info"


def claim_instance(instance: Path) -> int:
    """Lock `instance`'s lock file for this process's lifetime; return its fd.

    Raises SystemExit, naming the owner's pid, when a live instance holds it.
    The lock (flock) dies with its holder, so a killed server leaves none.
    """
    instance.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(instance.with_name(f"{instance.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SystemExit(
            f"[serve] error: another API instance (pid {owner}) is running from "
            f"{instance}; its files are left alone. Stop it, or serve on another "
            "port: API_PORT=<port> make serve"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def on_starting(server) -> None:
    instance = server.app.instance_dir
    server.instance_lock = claim_instance(instance)
    shutil.rmtree(instance, ignore_errors=True)
    (instance / "metrics").mkdir(parents=True)


def post_worker_init(worker) -> None:
    # The app is built: hundreds of thousands of long-lived objects (MLflow,
    # pandas, sklearn, the models). Freezing them keeps the cyclic garbage
    # collector from re-walking them every time requests' short-lived objects
    # trigger a full collection (that cost ~10 ms per 1,000-row batch).
    gc.freeze()


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(server.app.instance_dir / "metrics"))


def on_exit(server) -> None:
    shutil.rmtree(server.app.instance_dir, ignore_errors=True)
