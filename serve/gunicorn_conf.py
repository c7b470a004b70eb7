"""Gunicorn settings and hooks of an API instance, read by `python -m serve.instance`.

gunicorn's stock gthread worker: nginx in front (`serve/edge/`) reads every
request in full before an instance sees it, so a thread is only ever busy
with a whole request, never with a slow client. Sized for a CPU-bound
service: the instances' workers together match the cores
(`serve.edge.limits.workers_per_instance`, set by `serve.instance`), each
with `serve.edge.limits.THREADS` threads (its comment says why one); gthread
holds kept-alive connections in its poller meanwhile. The timeouts and
request limits come from `serve.edge.limits`, as nginx's do: gunicorn
accepts whatever nginx lets through, and keeps an idle connection open
longer than nginx does.
`preload_app` stays off: every worker builds its own app after the fork, so
no MLflow/SQLite/Redis connection is ever shared across a fork (the reload
design in serve/model/state.py does not need preloading either).

After a worker has built its app, its long-lived objects are frozen out of
the garbage collector's generations (see `post_worker_init`).

The hooks own the instance directory (`.run/serve/<port>/`, see
`serve.instance`): emptied when the master starts, so the first worker
resolves the champions afresh and Prometheus counts from zero; cleaned of
dead workers' gauges; removed when the master exits. The master first takes
`.run/serve/<port>.lock` (held until it exits): a second instance on the same
port stops there, before it could empty the directory a live one uses.
"""

from __future__ import annotations

import fcntl
import gc
import os
import shutil
from pathlib import Path

from serve.edge import limits

worker_class = "gthread"
threads = limits.THREADS
# Loading a model (and `/admin/reload`) takes seconds; predictions take ms.
timeout = limits.WORKER_TIMEOUT_SECONDS
graceful_timeout = 30
keepalive = limits.INSTANCE_KEEPALIVE_SECONDS
# Restart workers now and then (jittered, so not all at once) to bound leaks.
# Rarely: a restarting worker closes its idle keep-alive connections, and
# nginx retries a prediction sent on one of them on another instance.
max_requests = 200_000
max_requests_jitter = 20_000
backlog = 2048
# nginx refuses heads over its buffers; gunicorn takes anything they hold
# (a request line or header of one buffer; as many fields as fit in all).
limit_request_line = limits.HEAD_BUFFER_BYTES
limit_request_field_size = limits.HEAD_BUFFER_BYTES
limit_request_fields = min(32768, limits.HEAD_BUFFERS * limits.HEAD_BUFFER_BYTES // 4)
# Forwarded headers are read in one place, the app's ProxyFix (serve/app.py).
forwarded_allow_ips = ""
# No gunicornc control socket: unused, and one fixed path per user would
# collide between instances.
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
            f"{instance}; its files are left alone. Stop it, or serve on other "
            "ports: API_INSTANCE_PORT=<port> make serve"
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
